"""PyTorch anchor for `npm run bench`: the same MLP and CNN, batch, optimizer, KD loss and thread count as
simulations/bench-compute.ts, so the TensorFlow.js figures have a reference measured on the same machine in the
same run.

    python3 simulations/bench-torch.py [--quick]

Training: batch 128, Adam(1e-3), KD loss T^2 * KL(softmax(t/T) || softmax(s/T)) with T = 2, one thread.
Inference: one forward pass at batch 512 under torch.no_grad(). Figures are samples/s from the median step time.
Prints one JSON object on stdout (progress goes to stderr). Debian: `apt-get install python3-torch libopenblas0`
(without OpenBLAS, Debian's torch runs its matmuls on the reference BLAS, several times slower).
"""
import json
import os
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

TRAIN_BATCH = 128
INFER_BATCH = 512
T = 2.0
QUICK = "--quick" in sys.argv


def build(kind: str) -> nn.Module:
    # Same layers and shapes as shared/models/builders.ts (PyTorch's NCHW layout; init does not matter for speed).
    if kind == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                             nn.Linear(128, 10))
    return nn.Sequential(
        nn.Conv2d(1, 16, 3), nn.ReLU(), nn.MaxPool2d(2, 2),
        nn.Conv2d(16, 32, 3), nn.ReLU(), nn.MaxPool2d(2, 2),
        nn.Flatten(), nn.Linear(32 * 5 * 5, 64), nn.ReLU(), nn.Linear(64, 10))


def kd_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    # T^2 * mean over rows of KL(p_t || p_s), both at temperature T: what the clients' distillation step computes.
    log_pt = F.log_softmax(teacher / T, dim=-1)
    log_ps = F.log_softmax(student / T, dim=-1)
    return F.kl_div(log_ps, log_pt, reduction="batchmean", log_target=True) * (T * T)


def time_steps(step, warmup: int, steps: int) -> list:
    for _ in range(warmup):
        step()
    ms = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        ms.append((time.perf_counter() - t0) * 1000)
    return ms


def bench_train(kind: str, warmup: int, steps: int) -> dict:
    torch.manual_seed(7)
    model = build(kind)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(TRAIN_BATCH, 1, 28, 28)
    teacher = torch.randn(TRAIN_BATCH, 10) * 2

    def step():
        opt.zero_grad(set_to_none=True)
        loss = kd_loss(model(x), teacher)
        loss.backward()
        opt.step()
        loss.item()  # the clients read the loss every step, as bench-compute.ts does (dataSync)

    return row(kind, "train", TRAIN_BATCH, time_steps(step, warmup, steps))


def bench_infer(kind: str, warmup: int, steps: int) -> dict:
    torch.manual_seed(7)
    model = build(kind).eval()
    x = torch.rand(INFER_BATCH, 1, 28, 28)

    def step():
        with torch.no_grad():
            model(x).numpy()

    return row(kind, "infer", INFER_BATCH, time_steps(step, warmup, steps))


def row(kind: str, task: str, batch: int, ms: list) -> dict:
    med = statistics.median(ms)
    r = {"model": kind, "task": task, "batch": batch, "steps": len(ms), "medianMs": med,
         "samplesPerSec": batch * 1000 / med}
    print(f"  torch {kind} {task:5} {r['samplesPerSec']:7.0f} samples/s (median {med:.1f} ms over {len(ms)} steps)",
          file=sys.stderr)
    return r


def blas_in_use() -> str:
    """The BLAS library torch's process actually loaded (Debian's torch links the libblas.so.3 alternative)."""
    names = set()
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.split()[-1] if line.count("/") else ""
                base = os.path.basename(path)
                if "blas" in base or "mkl" in base or "blis" in base:
                    names.add(os.path.realpath(path))
    except OSError:
        pass
    if any("openblas" in n for n in names):
        return "OpenBLAS"
    if any("mkl" in n for n in names):
        return "MKL"
    if any("blis" in n for n in names):
        return "BLIS"
    if names:
        return "reference BLAS (install libopenblas0 for a fair comparison)"
    return "unknown"


def matmul_gflops() -> float:
    """One-thread 1024x1024 fp32 matmul speed: tells OpenBLAS (~tens of GFLOP/s) from reference BLAS (~1-3)."""
    a = torch.randn(1024, 1024)
    b = torch.randn(1024, 1024)
    a @ b
    ms = time_steps(lambda: a @ b, 1, 3)
    return 2 * 1024 ** 3 / (statistics.median(ms) / 1000) / 1e9


def main() -> None:
    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass  # already set in this process
    n = (lambda full, q: q if QUICK else full)
    t0 = time.perf_counter()
    rows = [
        bench_train("mlp", 3, n(30, 10)),
        bench_train("cnn", 2, n(15, 5)),
        bench_infer("mlp", 2, n(15, 5)),
        bench_infer("cnn", 2, n(10, 4)),
    ]
    out = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "blas": blas_in_use(),
        "matmul1024GflopsPerSec": matmul_gflops(),
        "trainBatch": TRAIN_BATCH,
        "inferBatch": INFER_BATCH,
        "loss": f"KD T^2*KL(softmax(t/T)||softmax(s/T)), T={T:g}, Adam(1e-3)",
        "rows": rows,
        "seconds": time.perf_counter() - t0,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
