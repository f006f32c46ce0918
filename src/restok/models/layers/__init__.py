"""Building blocks of the model families, official state-dict names: RoPE tables (:mod:`.rope`), the tokenizer's ViT
blocks with residual merging (:mod:`.vit`), the l2 vector quantizer (:mod:`.quantizer`), the MaskGIT-style pixel CNN
(:mod:`.pixel_cnn`) and the LlamaGen GPT blocks (:mod:`.llama`). Imports :mod:`restok.core` only."""
