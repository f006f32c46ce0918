"""Hand-worked cases for the hierarchy module (level sizes, grids, masks, position ids, HAR layout)."""

from __future__ import annotations

import pytest
import torch

from restok.core import hierarchy as Hy


def test_latent_levels_128_and_32():
    assert Hy.latent_level_sizes(128) == (1, 1, 2, 4, 8, 16, 32, 64)
    assert Hy.latent_level_sizes(32) == (1, 1, 2, 4, 8, 16)
    assert Hy.latent_level_bounds(8) == ((0, 1), (1, 2), (2, 4), (4, 8))
    assert Hy.latent_level_of_position(8) == (0, 1, 2, 2, 3, 3, 3, 3)


@pytest.mark.parametrize("bad", [0, 1, 3, 96, 100, -4])
def test_token_count_must_be_power_of_two(bad):
    with pytest.raises(ValueError, match="power of two"):
        Hy.latent_level_sizes(bad)


def test_pooled_grids_follow_alg1():
    # Alg. 1: w doubles on even levels, h on odd ones -> the official count -> (h, w) table
    table = {
        1: (1, 1),
        2: (1, 2),
        4: (2, 2),
        8: (2, 4),
        16: (4, 4),
        32: (4, 8),
        64: (8, 8),
        128: (8, 16),
        256: (16, 16),
    }
    for n, hw in table.items():
        assert Hy.pooled_grid(n) == hw
    assert Hy.latent_pool_grids(128) == ((1, 1), (1, 1), (1, 2), (2, 2), (2, 4), (4, 4), (4, 8), (8, 8))


def test_prefix_lengths_and_dropout_probs():
    assert Hy.prefix_lengths(128, 4) == (4, 8, 16, 32, 64, 128)
    assert Hy.prefix_lengths(32, 4) == (4, 8, 16, 32)
    assert Hy.prefix_lengths(16, 2) == (2, 4, 8, 16)
    with pytest.raises(ValueError, match="min_tokens"):
        Hy.prefix_lengths(128, 3)
    # App. A.2 / official: weights 1, 2, 4, 8, 16 and (1+2+4+8+16) * (1/0.2 - 1) = 124, over 155
    assert Hy.nested_dropout_probs(128, 4, 0.2) == pytest.approx([w / 155 for w in (1, 2, 4, 8, 16, 124)])
    assert Hy.nested_dropout_probs(32, 4, 0.2) == pytest.approx([w / 35 for w in (1, 2, 4, 28)])


def test_merge_layers_and_image_grids():
    assert Hy.merge_layers(24, 4) == (5, 11, 17)
    assert Hy.merge_layers(6, 4) == (0, 2, 3)
    assert Hy.merge_layers(6, 3) == (1, 3)
    assert Hy.merge_layers(12, 1) == ()
    with pytest.raises(ValueError, match="cannot hold"):
        Hy.merge_layers(2, 4)
    # 256 px / 16 -> 16x16; only the width halves at each merge
    assert Hy.image_level_grids((16, 16), 4) == ((16, 2), (16, 4), (16, 8), (16, 16))
    # 128 px / 16 -> 8x8
    assert Hy.image_level_grids((8, 8), 4) == ((8, 1), (8, 2), (8, 4), (8, 8))
    # a one-column level goes on by rows: the flattened level keeps every other token, i.e. every other row
    assert Hy.image_level_grids((4, 4), 4) == ((2, 1), (4, 1), (4, 2), (4, 4))
    with pytest.raises(ValueError, match="cannot be merged"):
        Hy.image_level_grids((3, 3), 2)
    # Table 3's pooling factors: 1 keeps every token, 4 every fourth (columns, then rows)
    assert Hy.image_level_grids((16, 16), 4, factor=1) == ((16, 16),) * 4
    assert Hy.image_level_grids((16, 16), 4, factor=4) == ((4, 1), (16, 1), (16, 4), (16, 16))
    flat = torch.arange(16 * 16).reshape(16, 16)
    kept = flat.flatten()[::4][::4][::4]  # the official 1-D nearest interpolation to n/4, three times
    assert kept.tolist() == flat[::4, 0].tolist()  # = rows 0, 4, 8, 12 of column 0: the (4, 1) grid


def test_hierarchical_causal_mask_small():
    m = Hy.hierarchical_causal_mask([2, 1, 2])
    expected = torch.tensor(
        [
            [1, 1, 0, 0, 0],
            [1, 1, 0, 0, 0],
            [1, 1, 1, 0, 0],
            [1, 1, 1, 1, 1],
            [1, 1, 1, 1, 1],
        ],
        dtype=torch.bool,
    )
    assert torch.equal(m, expected)


def test_encoder_mask_blocks_256px_128_tokens():
    grids = Hy.image_level_grids((16, 16), 4)
    blocks = Hy.encoder_block_sizes(grids, 128)
    assert blocks == (32, 64, 128, 256, 1, 1, 2, 4, 8, 16, 32, 64)
    m = Hy.hierarchical_causal_mask(blocks)
    assert m.shape == (608, 608)
    img, lat = slice(0, 480), slice(480, 608)
    assert not m[img, lat].any()  # image tokens never see latents
    assert not m[0:32, 32:480].any()  # the coarsest level sees no finer level
    assert m[224:480, 0:480].all()  # the finest level sees all image levels
    assert m[lat, img].all()  # latents see every image token
    assert m[480 + 64, 480 : 480 + 128].sum() == 128  # last latent level sees all latents
    assert m[480 + 4, 480 : 480 + 128].sum() == 8  # level 4 (positions 4..7) sees latents 0..7


def test_encoder_position_ids_256px_final_stage():
    grids = Hy.image_level_grids((16, 16), 4)
    ids = Hy.encoder_position_ids(grids, 128)
    assert ids.shape == (608, 2)
    assert ids[0].tolist() == [0, 0] and ids[1].tolist() == [0, 1] and ids[2].tolist() == [1, 0]
    # offsets are the running token counts 0, 32, 96, 224; latents start at 480
    assert ids[32].tolist() == [32, 32] and ids[32 + 5].tolist() == [33, 33]  # grid 16x4: (1, 1) + 32
    assert ids[96].tolist() == [96, 96] and ids[224].tolist() == [224, 224]
    assert ids[224 + 255].tolist() == [239, 239]
    assert ids[480].tolist() == [480, 480] and ids[607].tolist() == [607, 607]
    # stage 0 (before merges): 16x16 grid, latents from 256
    ids0 = Hy.encoder_position_ids(grids[-1:], 128)
    assert ids0[255].tolist() == [15, 15] and ids0[256].tolist() == [256, 256]


def test_encoder_position_ids_128px_32_tokens():
    grids = Hy.image_level_grids((8, 8), 4)
    ids = Hy.encoder_position_ids(grids, 32)
    # grids 8x1, 8x2, 8x4, 8x8: offsets 0, 8, 24, 56; latents 120..151
    assert ids[7].tolist() == [7, 0]
    assert ids[8].tolist() == [8, 8] and ids[9].tolist() == [8, 9]
    assert ids[24].tolist() == [24, 24] and ids[56].tolist() == [56, 56]
    assert ids[120].tolist() == [120, 120] and ids[-1].tolist() == [151, 151]


def test_decoder_position_ids():
    ids = Hy.decoder_position_ids((16, 16), 128)
    assert ids.shape == (384, 2)
    assert ids[5].tolist() == [5, 5]
    assert ids[128].tolist() == [128, 128] and ids[129].tolist() == [128, 129] and ids[383].tolist() == [143, 143]


def test_har_layout_32_tokens_hand_worked():
    lay = Hy.har_input_layout(32, 4)
    C, T, S = Hy.HARInput.CLASS, Hy.HARInput.TOKEN, Hy.HARInput.SPECIAL
    expected = (
        [(C, 0)]
        + [(T, 0), (T, 1), (T, 2)]  # positions 1-3: next-token prediction
        + [(T, 3), (S, 0), (S, 1), (S, 2)]  # 4-7: predicts t4..t7
        + [(T, j) for j in range(4, 8)]
        + [(S, j) for j in range(3, 7)]  # 8-15
        + [(T, j) for j in range(8, 16)]
        + [(S, j) for j in range(7, 15)]  # 16-31
    )
    assert list(zip(lay.kind, lay.index)) == expected
    assert lay.num_special == 15
    assert Hy.har_input_layout(128, 4).num_special == 63  # s0..s62, as in the official model


def test_har_mask_32_tokens_hand_worked():
    m = Hy.har_attention_mask(32, 4)
    assert m.shape == (32, 32)
    for p in range(4):  # strictly causal, blocked from every HAR group
        assert m[p].nonzero().flatten().tolist() == list(range(p + 1))
    for start, end in ((4, 8), (8, 16), (16, 32)):
        for p in range(start, end):  # everything earlier plus the whole own group
            assert m[p].nonzero().flatten().tolist() == list(range(end))


def test_har_steps_and_counts():
    assert Hy.har_step_positions(32, 4) == ((0, 1), (1, 2), (2, 3), (3, 4), (4, 8), (8, 16), (16, 32))
    assert Hy.har_num_steps(128, 4) == 9
    assert Hy.har_num_steps(128, 128) == 128
    assert Hy.har_num_steps(16, 2) == 5
    with pytest.raises(ValueError, match="ar_tokens"):
        Hy.har_step_positions(128, 3)


def test_vanilla_layout_is_next_token_prediction():
    lay = Hy.har_input_layout(16, 16)
    assert lay.kind == (0,) + (1,) * 15 and lay.index == (0,) + tuple(range(15))
    assert torch.equal(Hy.har_attention_mask(16, 16), torch.ones(16, 16, dtype=torch.bool).tril())


@pytest.mark.parametrize("L,A", [(8, 1), (16, 2), (64, 4), (128, 8), (32, 32)])
def test_har_layout_is_causal_for_every_step(L, A):
    # a position's input may only use tokens predicted by earlier steps
    lay = Hy.har_input_layout(L, A)
    for start, end in Hy.har_step_positions(L, A):
        for p in range(start, end):
            if lay.kind[p] == Hy.HARInput.TOKEN:
                assert lay.index[p] < start
    # steps tile the sequence exactly
    pos = [p for s, e in Hy.har_step_positions(L, A) for p in range(s, e)]
    assert pos == list(range(L))
