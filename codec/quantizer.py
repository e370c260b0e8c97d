"""Split residual vector quantizer with Euclidean EMA codebooks.

Codebook entries are `embedding_sum / cluster_usage`, both updated by an
exponential moving average during training (no gradient reaches them); codes
whose usage falls below a fraction of the uniform share are restarted on
random vectors of the batch. The semantic and acoustic halves each see the
same latent through their own projection, and their outputs are summed.
"""
from __future__ import annotations

import random

import torch
import torch.nn.functional as F
from torch import nn

from .config import CodecConfig


class EuclideanCodebook(nn.Module):
    def __init__(self, dim: int, size: int, decay: float, dead_threshold: float, epsilon: float = 1e-5,
                 check_every: int = 5) -> None:
        super().__init__()
        self.size, self.decay, self.dead_threshold, self.epsilon = size, decay, dead_threshold, epsilon
        self.check_every = check_every
        self._steps = 0
        self.register_buffer("embedding_sum", torch.zeros(size, dim))
        self.register_buffer("cluster_usage", torch.ones(size))
        self.register_buffer("initialized", torch.zeros(1))
        self._cache: tuple[torch.Tensor, torch.Tensor] | None = None

    def _entries(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Entries and half their squared norms, cached until the buffers change."""
        if self._cache is None or torch.is_grad_enabled():
            emb = self.embedding_sum / self.cluster_usage.clamp(min=self.epsilon)[:, None]
            self._cache = (emb, 0.5 * (emb * emb).sum(-1))
        return self._cache

    # Every way the buffers change drops the cache: loading, moving, and the EMA update.
    def _load_from_state_dict(self, *args, **kwargs) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._cache = None

    def _apply(self, *args, **kwargs):
        self._cache = None
        return super()._apply(*args, **kwargs)

    @property
    def embedding(self) -> torch.Tensor:
        return self._entries()[0]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Nearest entry for each row of x [N, D]: argmin of |e|^2/2 - x.e (|x|^2 is the same for all e)."""
        emb, half_norm = self._entries()
        return torch.addmm(half_norm, x, emb.t(), alpha=-1).argmin(dim=-1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return F.embedding(codes, self.embedding)

    @torch.no_grad()
    def update(self, x: torch.Tensor, codes: torch.Tensor) -> float:
        """One EMA step on a batch of latents x [N, D] and their codes; returns the restarted fraction."""
        self._cache = None
        if not self.initialized.item():
            self.embedding_sum.copy_(_sample(x, self.size))
            self.cluster_usage.fill_(1.0)
            self.initialized.fill_(1.0)
            return 0.0
        usage = torch.zeros_like(self.cluster_usage).index_add_(0, codes, torch.ones_like(codes, dtype=x.dtype))
        sums = torch.zeros_like(self.embedding_sum).index_add_(0, codes, x)
        self.cluster_usage.mul_(self.decay).add_(usage, alpha=1 - self.decay)
        self.embedding_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        self._steps += 1
        if self._steps % self.check_every:
            return 0.0
        share = self.cluster_usage.sum() / self.size
        dead = self.cluster_usage < self.dead_threshold * share
        if dead.any():
            self.embedding_sum[dead] = _sample(x, self.size)[dead] * share
            self.cluster_usage[dead] = share
        return dead.float().mean().item()


def _sample(x: torch.Tensor, n: int) -> torch.Tensor:
    index = torch.randperm(x.shape[0], device=x.device)[:n] if x.shape[0] >= n else torch.randint(0, x.shape[0], (n,), device=x.device)
    return x[index]


class ResidualVQ(nn.Module):
    """Codebooks applied in turn to what the previous ones left, in a projected space."""

    def __init__(self, cfg: CodecConfig, n_codebooks: int) -> None:
        super().__init__()
        self.input_proj = nn.Conv1d(cfg.dimension, cfg.codebook_dim, 1, bias=False)
        self.output_proj = nn.Conv1d(cfg.codebook_dim, cfg.dimension, 1, bias=False)
        self.codebooks = nn.ModuleList(
            EuclideanCodebook(cfg.codebook_dim, cfg.bins, cfg.ema_decay, cfg.dead_code_threshold) for _ in range(n_codebooks))

    def encode(self, x: torch.Tensor, n: int) -> torch.Tensor:
        """x [B, C, T] -> codes [B, n, T]."""
        residual = self.input_proj(x).transpose(1, 2)
        flat = residual.reshape(-1, residual.shape[-1])
        codes = []
        for book in self.codebooks[:n]:
            c = book.encode(flat)
            flat = flat - book.decode(c)
            codes.append(c)
        return torch.stack(codes, 1).view(x.shape[0], -1, n).transpose(1, 2)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, n, T] -> [B, C, T]."""
        out = sum(book.decode(codes[:, i]) for i, book in enumerate(self.codebooks[: codes.shape[1]]))
        return self.output_proj(out.transpose(1, 2))

    def quantize(self, x: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
        """Training pass: straight-through quantized latent, codes, commitment loss, restarted fraction."""
        z = self.input_proj(x).transpose(1, 2)
        flat = z.reshape(-1, z.shape[-1])
        residual, quantized = flat, torch.zeros_like(flat)
        losses, codes, restarted = [], [], 0.0
        for book in self.codebooks[:n]:
            c = book.encode(residual.detach())
            q = book.decode(c).detach()
            losses.append(F.mse_loss(residual, q))
            if self.training:
                restarted += book.update(residual.detach(), c)
            residual = residual - q
            quantized = quantized + q
            codes.append(c)
        quantized = flat + (quantized - flat).detach()
        out = self.output_proj(quantized.view_as(z).transpose(1, 2))
        code_tensor = torch.stack(codes, 1).view(x.shape[0], -1, n).transpose(1, 2)
        return out, code_tensor, torch.stack(losses).mean(), restarted / max(n, 1)


class SplitRVQ(nn.Module):
    def __init__(self, cfg: CodecConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.first = ResidualVQ(cfg, cfg.n_q_semantic)
        self.rest = ResidualVQ(cfg, cfg.n_q - cfg.n_q_semantic)
        self._dropout_rng = random.Random(1234)

    def encode(self, x: torch.Tensor, n: int) -> torch.Tensor:
        codes = self.first.encode(x, self.cfg.n_q_semantic)
        if n > self.cfg.n_q_semantic:
            codes = torch.cat([codes, self.rest.encode(x, n - self.cfg.n_q_semantic)], dim=1)
        return codes

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        k = self.cfg.n_q_semantic
        out = self.first.decode(codes[:, :k])
        if codes.shape[1] > k:
            out = out + self.rest.decode(codes[:, k:])
        return out

    def quantize(self, x: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
        """Training pass; with quantizer dropout a random number of acoustic codebooks is kept."""
        k = self.cfg.n_q_semantic
        n_rest = n - k
        if self.training and self.cfg.quantizer_dropout and n_rest > 0:
            n_rest = self._dropout_rng.randint(1, n_rest)
        q1, c1, l1, r1 = self.first.quantize(x, k)
        if n_rest == 0:
            return q1, c1, l1, r1
        q2, c2, l2, r2 = self.rest.quantize(x, n_rest)
        total = k + n_rest
        return q1 + q2, torch.cat([c1, c2], 1), (l1 * k + l2 * n_rest) / total, (r1 * k + r2 * n_rest) / total
