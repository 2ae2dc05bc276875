"""Train the sample digits CNN and export it as float32 ONNX and int8 (QOperator) ONNX.

Outputs, next to this file (all committed, so nothing else needs torch or scikit-learn):

    digits_fp32.onnx   input "input" float32 [batch, 1, 8, 8] in [0, 1]; output "logits" [batch, 10]
    digits_int8.onnx   the same graph quantized by onnxruntime (QLinearConv / QGemm, int8 activations,
                       int8 weights, per-tensor), calibrated on training images
    test_set.npz       the held-out images ("images" float32 [N, 1, 8, 8]) and "labels" int64 [N]

Needs the "train" extra (torch, scikit-learn):  .venv/bin/pip install -e ".[train]"
Run:  .venv/bin/python modules/samples/digits/train.py [--out DIR] [--epochs N]
Seeds and the split are fixed, so a re-run reproduces the same data split and (on the same
torch build) the same weights.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

HERE = Path(__file__).resolve().parent
SEED = 0
OPSET = 17


class DigitsCnn(nn.Module):
    """Small on purpose: the int8 file stays a few KB and every op has an int8 lowering."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Flatten(),
        )
        self.classifier = nn.Linear(16 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def load_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    digits = load_digits()
    # pixel values are 0..16; scale to [0, 1] so the quantizer sees a well-defined input range
    images = (digits.data.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    labels = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=0.25, random_state=SEED, stratify=labels
    )
    return x_train, x_test, y_train, y_test


def train(x_train: np.ndarray, y_train: np.ndarray, epochs: int) -> DigitsCnn:
    torch.manual_seed(SEED)
    model = DigitsCnn()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss_fn = nn.CrossEntropyLoss()
    xs, ys = torch.from_numpy(x_train), torch.from_numpy(y_train)
    generator = torch.Generator().manual_seed(SEED)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(xs), generator=generator)
        for start in range(0, len(xs), 64):
            batch = order[start : start + 64]
            optimizer.zero_grad()
            loss = loss_fn(model(xs[batch]), ys[batch])
            loss.backward()
            optimizer.step()
    model.eval()
    return model


def export_fp32(model: DigitsCnn, path: Path) -> None:
    example = torch.zeros(1, 1, 8, 8)
    # the TorchScript exporter (dynamo=False) needs no onnxscript and gives plain Conv/Gemm nodes
    torch.onnx.export(
        model,
        (example,),
        str(path),
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=OPSET,
        dynamo=False,
    )
    onnx.checker.check_model(onnx.load(str(path)))


class _Calibration(CalibrationDataReader):
    def __init__(self, images: np.ndarray) -> None:
        self._batches = iter([{"input": images[i : i + 32]} for i in range(0, len(images), 32)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def export_int8(fp32_path: Path, int8_path: Path, calibration_images: np.ndarray) -> None:
    quantize_static(
        str(fp32_path),
        str(int8_path),
        _Calibration(calibration_images),
        quant_format=QuantFormat.QOperator,
        per_channel=False,
        # int8 activations rather than onnxruntime's uint8 default: its uint8 x int8 AVX2 kernels saturate
        # 16-bit intermediate sums, so the CPU reference would drift (up to 0.6 on these logits) from an
        # exact int8 executor and loosen every accelerator's golden-input check; int8 x int8 is exact
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
    )
    onnx.checker.check_model(onnx.load(str(int8_path)))


def accuracy(model_path: Path, images: np.ndarray, labels: np.ndarray) -> float:
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    (logits,) = session.run(["logits"], {"input": images})
    return float((np.argmax(logits, axis=1) == labels).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=HERE, help="output directory (default: next to this script)")
    parser.add_argument("--epochs", type=int, default=80)
    args = parser.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    x_train, x_test, y_train, y_test = load_split()
    model = train(x_train, y_train, args.epochs)
    fp32_path, int8_path = out / "digits_fp32.onnx", out / "digits_int8.onnx"
    export_fp32(model, fp32_path)
    export_int8(fp32_path, int8_path, x_train)
    np.savez_compressed(out / "test_set.npz", images=x_test, labels=y_test)

    ops = sorted({node.op_type for node in onnx.load(str(int8_path)).graph.node})
    print(f"train images: {len(x_train)}, test images: {len(x_test)}")
    print(
        f"{fp32_path.name}: {fp32_path.stat().st_size} bytes, test accuracy {accuracy(fp32_path, x_test, y_test):.4f}"
    )
    print(
        f"{int8_path.name}: {int8_path.stat().st_size} bytes, test accuracy {accuracy(int8_path, x_test, y_test):.4f}"
    )
    print(f"int8 ops: {', '.join(ops)}")


if __name__ == "__main__":
    main()
