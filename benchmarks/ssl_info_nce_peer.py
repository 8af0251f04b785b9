"""PyTorch peer of benchmarks/ssl_info_nce_bench.cpp: the MoCo InfoNCE at B = 32, D = 128,
K = 65 536, tau = 0.07, float32 on the CPU, 2 threads; forward only and forward + backward (grad
to q). Three formulations:
  official  l_neg = q @ (queue * decay**age).clone().detach()   (MSCL moco.py: age-weighted bank)
  moco      l_neg = q @ queue.clone().detach()                   (MoCo v2, no age weights)
  nocopy    l_neg = q @ queue                                    (the cheapest possible composition)
Run: /usr/bin/python3 benchmarks/ssl_info_nce_peer.py  (right after the C++ benchmark, same machine)
"""
import time

import torch

torch.set_num_threads(2)
B, D, K, TAU = 32, 128, 65536, 0.07
g = torch.Generator().manual_seed(0)
queue = torch.nn.functional.normalize(torch.randn(D, K, generator=g), dim=0)
w = 0.99999 ** torch.randint(0, 512, (K,), generator=g).float()
q0 = torch.nn.functional.normalize(torch.randn(B, D, generator=g), dim=1)
k = torch.nn.functional.normalize(torch.randn(B, D, generator=g), dim=1)
labels = torch.zeros(B, dtype=torch.long)

BANKS = {
    "official": lambda: (queue * w).clone().detach(),
    "moco": lambda: queue.clone().detach(),
    "nocopy": lambda: queue,
}


def step(bank_fn, backward):
    q = q0.clone().requires_grad_(backward)
    lpos = torch.einsum("nc,nc->n", q, k).unsqueeze(-1)
    lneg = torch.einsum("nc,ck->nk", q, bank_fn())
    loss = torch.nn.functional.cross_entropy(torch.cat([lpos, lneg], 1) / TAU, labels)
    if backward:
        loss.backward()
    return loss


for name, bank_fn in BANKS.items():
    for backward in (False, True):
        with torch.set_grad_enabled(backward):
            for _ in range(3):
                step(bank_fn, backward)
            ts = []
            for _ in range(15):
                t = time.perf_counter()
                step(bank_fn, backward)
                ts.append(time.perf_counter() - t)
        ts.sort()
        print(f"torch {torch.__version__} {name:8s} {'fwd+bwd' if backward else 'fwd    '}: "
              f"median {1000 * ts[len(ts) // 2]:.1f} ms, min {1000 * ts[0]:.1f} ms")
