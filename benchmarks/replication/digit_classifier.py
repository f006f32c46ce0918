"""A small CNN digit classifier, trained on the 4,000 embedded training digits, to judge whether generated
digits show the requested class (the class-accuracy figure of the embedded generator).

    python benchmarks/replication/digit_classifier.py            # trains (about 30 s on 2 CPU cores), prints held-out
    accuracy
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from restok.data.embedded import MNISTDigits

WEIGHTS = Path(__file__).resolve().parent / "digit_classifier.safetensors"


class DigitNet(nn.Module):
    """32x32 RGB digit -> 10 logits (two conv blocks and a linear head)."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(3, 32, 3, padding=1), nn.Conv2d(32, 64, 3, padding=1)
        self.fc = nn.Linear(64 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, 32, 32) in [0, 1] -> (B, 10)."""
        x = F.max_pool2d(F.relu(self.c1(x)), 2)
        x = F.max_pool2d(F.relu(self.c2(x)), 2)
        return self.fc(x.flatten(1))


def load_classifier() -> DigitNet:
    """The trained classifier (train it first with this script)."""
    net = DigitNet()
    net.load_state_dict(load_file(str(WEIGHTS)))
    return net.eval()


@torch.no_grad()
def accuracy(net: DigitNet, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of images classified as their label."""
    return float((net(images).argmax(1) == labels).float().mean())


def main() -> None:
    """Train for 5 epochs with Adam, save, report held-out accuracy."""
    torch.manual_seed(0)
    train, test = MNISTDigits("train"), MNISTDigits("test")
    x, y = train.batch(range(len(train)))
    xt, yt = test.batch(range(len(test)))
    net = DigitNet()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    for epoch in range(5):
        for idx in torch.randperm(len(y), generator=g).split(64):
            loss = F.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        print(f"epoch {epoch + 1}: held-out accuracy {accuracy(net.eval(), xt, yt):.4f}")
        net.train()
    save_file(net.state_dict(), str(WEIGHTS))
    print(f"saved {WEIGHTS}")


if __name__ == "__main__":
    main()
