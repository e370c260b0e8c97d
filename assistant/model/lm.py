"""The streaming fused LM (Moshi architecture, with MoshiVis-style gated cross-attention to vision).

Once per 80 ms frame, `step` sums the embeddings of the text stream, the
model's own audio codebooks and the user's codebooks (each read at its
acoustic delay), runs the temporal transformer one step (ring KV cache per
session), reads the vision tokens through gated cross-attention, then the depth
transformer emits the text token and the model's codebooks one after another
with separate weights per codebook. All per-session tensors live in an
explicit state with the batch first, so rows join, reset and leave freely.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from core.attention import Attention, StepContext
from core.errors import ModelInputError
from core.state import State

from .config import LMConfig
from .layers import GatedFFN, RMSNorm
from .sampling import sample


def embed(table: nn.Embedding, tokens: torch.Tensor) -> torch.Tensor:
    """Embedding where the token -1 ("no input") gives an exact zero vector."""
    out = table(tokens.clamp(min=0))
    return torch.where((tokens == -1)[..., None], torch.zeros((), dtype=out.dtype, device=out.device), out)


# -- vision: shared cross-attention projections, per-layer conditional gates ----------------------
class VisionCrossAttention(nn.Module):
    """Projections shared by every temporal layer (as in MoshiVis). Keys/values depend only on the
    vision tokens, so a session computes them once per changed token, not once per layer or step."""

    def __init__(self, cfg: LMConfig) -> None:
        super().__init__()
        self.heads = cfg.num_heads
        self.proj = nn.Linear(cfg.vision_dim, cfg.dim)  # vision width -> model width, with bias
        self.proj_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.in_proj = nn.Linear(cfg.dim, 3 * cfg.dim, bias=False)  # rows: q | k | v
        self.out_proj = nn.Linear(cfg.dim, cfg.dim, bias=False)

    def _rows(self, x: torch.Tensor, part: slice) -> torch.Tensor:
        """A slice of the fused projection's outputs (q, or k|v), whatever the linear's kind."""
        if isinstance(self.in_proj, nn.Linear):
            return F.linear(x, self.in_proj.weight[part])
        return self.in_proj(x)[..., part]

    def keys_values(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens [..., N, Dv] -> k, v [..., H, N, Dh]."""
        dim = self.out_proj.in_features
        src = self.proj_norm(self.proj(tokens))
        kv = self._rows(src, slice(dim, None)).unflatten(-1, (2, self.heads, -1)).movedim(-3, 0).transpose(-3, -2)
        return kv[0], kv[1]

    def forward(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        q = self._rows(x, slice(0, self.out_proj.in_features)).unflatten(-1, (self.heads, -1)).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.out_proj(out.transpose(1, 2).flatten(2))


class ConditionalGate(nn.Module):
    """Per-layer gate computed from the cross-attention output itself: y * sigmoid(mlp(y) - 4).
    The output layer starts at zero, so a new adapter passes about 1.8% of y until trained."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.linear_in = nn.Linear(dim, hidden, bias=False)
        self.linear_out = nn.Linear(hidden, dim, bias=False)
        nn.init.zeros_(self.linear_out.weight)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return y * torch.sigmoid(self.linear_out(F.relu(self.linear_in(y))) - 4.0)


# -- temporal transformer ------------------------------------------------------------------------
class TemporalLayer(nn.Module):
    def __init__(self, cfg: LMConfig) -> None:
        super().__init__()
        self.norm1 = RMSNorm(cfg.dim, cfg.norm_eps)
        self.self_attn = Attention(cfg.dim, cfg.num_heads, cfg.context)
        if cfg.has_vision:
            self.norm_cross = RMSNorm(cfg.dim, cfg.norm_eps)
            self.gate = ConditionalGate(cfg.dim, cfg.gate_hidden)
        self.norm2 = RMSNorm(cfg.dim, cfg.norm_eps)
        self.gating = GatedFFN(cfg.dim, cfg.hidden)

    def forward(self, x: torch.Tensor, state: State, ctx: StepContext, vision: VisionStep | None) -> torch.Tensor:
        x = x + self.self_attn(self.norm1(x), state, ctx)
        if vision is not None:
            update = self.gate(vision.attend(self.norm_cross(x)))
            x = x + torch.where(vision.rows[:, None, None], update, x.new_zeros(()))
        return x + self.gating(self.norm2(x))


@dataclass
class VisionStep:
    """What the layers need for cross-attention this step: the shared module and the cached K/V."""
    module: VisionCrossAttention
    k: torch.Tensor
    v: torch.Tensor
    rows: torch.Tensor  # [B] bool: rows that have vision tokens

    def attend(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x, self.k, self.v)


# -- depth transformer ---------------------------------------------------------------------------
class DepthLayer(nn.Module):
    """One depth layer; attention, FFN and projections have separate weights per generated stream."""

    def __init__(self, cfg: LMConfig) -> None:
        super().__init__()
        d, steps = cfg.depformer_dim, cfg.dep_q
        self.heads = cfg.depformer_heads
        self.norm1 = RMSNorm(d, cfg.norm_eps)
        self.in_projs = nn.ModuleList(nn.Linear(d, 3 * d, bias=False) for _ in range(steps))
        self.out_projs = nn.ModuleList(nn.Linear(d, d, bias=False) for _ in range(steps))
        self.norm2 = RMSNorm(d, cfg.norm_eps)
        self.gating = nn.ModuleList(GatedFFN(d, cfg.depformer_hidden) for _ in range(steps))

    @staticmethod
    def _per_step(modules: nn.ModuleList, x: torch.Tensor, start: int) -> torch.Tensor:
        return torch.cat([modules[start + i](x[:, i:i + 1]) for i in range(x.shape[1])], dim=1)

    def forward(self, x: torch.Tensor, start: int, kv: State) -> torch.Tensor:
        """x [N, S, D]: streams start .. start+S-1 of the frame; kv holds the earlier streams' keys/values."""
        steps = x.shape[1]
        q, k, v = self._per_step(self.in_projs, self.norm1(x), start).unflatten(-1, (3, self.heads, -1)).permute(2, 0, 3, 1, 4)
        if start:
            k, v = torch.cat([kv["k"], k], dim=2), torch.cat([kv["v"], v], dim=2)
        kv["k"], kv["v"] = k, v
        mask = torch.ones(steps, start + steps, dtype=torch.bool, device=x.device).tril(start)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + self._per_step(self.out_projs, out.transpose(1, 2).flatten(2), start)
        return x + self._per_step(self.gating, self.norm2(x), start)


# -- the model -----------------------------------------------------------------------------------
@dataclass
class StepOutput:
    text: torch.Tensor  # [B] text token generated this step (the caption stream)
    audio: torch.Tensor  # [B, dep_q] the model's codes for the frame `max_delay` steps ago, delays undone
    valid: torch.Tensor  # [B] bool: audio is meaningful (False for each row's first max_delay steps)
    text_logits: torch.Tensor  # [B, text_card]


class StreamingLM(nn.Module):
    def __init__(self, cfg: LMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.text_emb = nn.Embedding(cfg.text_card + 1, cfg.dim)
        self.emb = nn.ModuleList(nn.Embedding(cfg.card + 1, cfg.dim) for _ in range(cfg.n_q))
        self.transformer = nn.ModuleList(TemporalLayer(cfg) for _ in range(cfg.num_layers))
        self.out_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.text_linear = nn.Linear(cfg.dim, cfg.text_card, bias=False)
        self.depformer_in = nn.ModuleList(nn.Linear(cfg.dim, cfg.depformer_dim, bias=False) for _ in range(cfg.dep_q))
        self.depformer_text_emb = nn.Embedding(cfg.text_card + 1, cfg.depformer_dim)
        self.depformer_emb = nn.ModuleList(nn.Embedding(cfg.card + 1, cfg.depformer_dim) for _ in range(cfg.dep_q - 1))
        self.depformer = nn.ModuleList(DepthLayer(cfg) for _ in range(cfg.depformer_layers))
        self.linears = nn.ModuleList(nn.Linear(cfg.depformer_dim, cfg.card, bias=False) for _ in range(cfg.dep_q))
        self.vision = VisionCrossAttention(cfg) if cfg.has_vision else None
        # computed, not stored: made on the CPU even when the model is built on the meta device (loading)
        self.register_buffer("delays", torch.tensor(cfg.delays, device="cpu"), persistent=False)

    # -- state -----------------------------------------------------------------------------------
    def _param(self) -> torch.Tensor:
        return self.text_emb.weight

    def init_state(self, batch: int) -> State:
        cfg, p = self.cfg, self._param()
        layers: State = {str(i): layer.self_attn.init_state(batch, p.device, p.dtype)
                         for i, layer in enumerate(self.transformer)}
        layers["end"] = torch.zeros(batch, dtype=torch.long, device=p.device)
        state: State = {
            "transformer": layers,
            # tokens written ahead of the step that reads them (acoustic delays), ring of max_delay + 2
            "tokens": torch.zeros(batch, cfg.n_q + 1, cfg.max_delay + 2, dtype=torch.long, device=p.device),
            "offset": torch.zeros(batch, dtype=torch.long, device=p.device),
            "seed": torch.zeros(batch, dtype=torch.long, device=p.device),
        }
        if cfg.has_vision:
            shape = (batch, cfg.num_heads, cfg.vision_tokens, cfg.dim // cfg.num_heads)
            state["vision"] = {"k": torch.zeros(shape, dtype=p.dtype, device=p.device),
                               "v": torch.zeros(shape, dtype=p.dtype, device=p.device),
                               "on": torch.zeros(batch, dtype=torch.bool, device=p.device)}
        return state

    # -- vision ----------------------------------------------------------------------------------
    def update_vision(self, state: State, row: int, tokens: torch.Tensor, changed: torch.Tensor | None = None) -> None:
        """Give session `row` its vision tokens [vision_tokens, vision_dim]; with `changed` (indices),
        only those tokens' keys/values are recomputed."""
        cfg = self.cfg
        if self.vision is None:
            raise ModelInputError("this model has no vision adapters")
        if tokens.shape != (cfg.vision_tokens, cfg.vision_dim) or not tokens.is_floating_point():
            raise ModelInputError(f"vision tokens must be floats shaped [{cfg.vision_tokens}, {cfg.vision_dim}]; "
                                  f"got {list(tokens.shape)} {tokens.dtype}")
        vis = state["vision"]
        tokens = tokens.to(vis["k"].dtype)
        if changed is None or not bool(vis["on"][row]):
            changed = torch.arange(cfg.vision_tokens, device=tokens.device)
        changed = torch.as_tensor(changed, dtype=torch.long, device=tokens.device)
        if changed.numel() and (changed.min() < 0 or changed.max() >= cfg.vision_tokens):
            raise ModelInputError(f"changed token indices must lie in [0, {cfg.vision_tokens})")
        if changed.numel():
            k, v = self.vision.keys_values(tokens[changed])
            vis["k"][row, :, changed] = k
            vis["v"][row, :, changed] = v
        vis["on"][row] = True

    def clear_vision(self, state: State, row: int) -> None:
        if "vision" in state:
            state["vision"]["on"][row] = False

    # -- one frame -------------------------------------------------------------------------------
    def _check_user(self, codes: torch.Tensor, state: State) -> torch.Tensor:
        cfg, batch = self.cfg, state["offset"].shape[0]
        if not isinstance(codes, torch.Tensor) or codes.is_floating_point() or codes.dtype == torch.bool:
            raise ModelInputError("user codes must be an integer tensor")
        if codes.shape != (batch, cfg.n_user):
            raise ModelInputError(f"user codes must be shaped [{batch}, {cfg.n_user}] (batch, user codebooks); "
                                  f"got {list(codes.shape)}")
        if codes.numel() and (codes.min() < -1 or codes.max() >= cfg.card):
            raise ModelInputError(f"user codes must lie in [0, {cfg.card}) or be -1 (no input); "
                                  f"got {int(codes.min())}..{int(codes.max())}")
        return codes.long()

    def _inputs(self, user: torch.Tensor, state: State) -> torch.Tensor:
        """This step's input token of every stream [B, 1 + n_q], initial tokens where a delay has not elapsed."""
        cfg, tokens, offset = self.cfg, state["tokens"], state["offset"]
        ring = tokens.shape[-1]
        user_delays = self.delays[cfg.dep_q + 1:]
        write = ((offset[:, None] + user_delays) % ring)[..., None]
        tokens[:, cfg.dep_q + 1:].scatter_(2, write, user[..., None])
        current = tokens.gather(2, (offset % ring)[:, None, None].expand(-1, cfg.n_q + 1, 1))[..., 0]
        initial = torch.full_like(current, cfg.card)
        initial[:, 0] = cfg.text_card
        return torch.where(offset[:, None] <= self.delays, initial, current)

    def temporal(self, inputs: torch.Tensor, state: State, vision: bool | None = None) -> torch.Tensor:
        """Input tokens [B, 1 + n_q, T] -> normalised transformer output [B, T, dim].

        T = 1 when streaming; a longer T from a fresh state is the offline (teacher-forced) pass. `vision`: whether
        any row has vision tokens, when the caller knows (None: read it from the state, a device sync)."""
        x = None
        for k, table in enumerate(self.emb):
            e = embed(table, inputs[:, k + 1])
            x = e if x is None else x + e
        x = x + embed(self.text_emb, inputs[:, 0])
        layers, cfg = state["transformer"], self.cfg
        ctx = StepContext.build(layers["end"], x.shape[1], cfg.context, cfg.dim // cfg.num_heads,
                                cfg.rope_max_period, x.dtype)
        seeing = None
        if self.vision is not None and (bool(state["vision"]["on"].any()) if vision is None else vision):
            vis = state["vision"]
            seeing = VisionStep(self.vision, vis["k"], vis["v"], vis["on"])
        for i, layer in enumerate(self.transformer):
            x = layer(x, layers[str(i)], ctx, seeing)
        layers["end"] += x.shape[1]
        return self.out_norm(x)

    def depth_logits(self, out: torch.Tensor, stream: int, token: torch.Tensor, kv: list[State]) -> torch.Tensor:
        """Logits of generated audio stream `stream` [B, card], given the previous stream's token [B]."""
        x = self.depformer_in[stream](out)
        prev = self.depformer_text_emb if stream == 0 else self.depformer_emb[stream - 1]
        x = x + embed(prev, token[:, None])
        for layer, layer_kv in zip(self.depformer, kv):
            x = layer(x, stream, layer_kv)
        return self.linears[stream](x)[:, 0]

    @torch.no_grad()
    def step(self, user_codes: torch.Tensor, state: State, greedy: bool = False,
             forced_text: torch.Tensor | None = None, checked: bool = True, vision: bool | None = None) -> StepOutput:
        """One frame for every row: user codes [B, n_user] in, text token and model codes out.

        `forced_text` [B] replaces the sampled text token (teacher forcing, e.g. scripted answers). A caller whose
        codes are valid by construction (the engine: the codec made them) passes `checked=False` and says whether
        any row has `vision` tokens: the step then never waits on the device, so it can be captured as a graph.
        """
        cfg = self.cfg
        user = self._check_user(user_codes, state) if checked else user_codes
        offset = state["offset"]
        out = self.temporal(self._inputs(user, state)[..., None], state, vision)
        text_logits = self.text_linear(out)[:, 0]
        draws = offset * (cfg.dep_q + 1)  # per-row counters: one per sampled token
        seeds = None if greedy else state["seed"]
        text = sample(text_logits, cfg.text_temperature, cfg.text_top_k, seeds, draws)
        if forced_text is not None:
            text = forced_text.to(text)
        kv: list[State] = [{} for _ in self.depformer]
        token, audio = text, []
        for stream in range(cfg.dep_q):
            logits = self.depth_logits(out, stream, token, kv)
            token = sample(logits, cfg.temperature, cfg.top_k, seeds, draws + 1 + stream)
            audio.append(token)
        generated = torch.stack([text, *audio], dim=1)  # [B, 1 + dep_q]
        ring = state["tokens"].shape[-1]
        state["offset"] += 1
        pos = (offset % ring)[:, None, None].expand(-1, cfg.dep_q + 1, 1)
        state["tokens"][:, : cfg.dep_q + 1].scatter_(2, pos, generated[..., None])
        # Undo the delays: stream k's token for frame (offset - 1 - max_delay) was written at that + delay_k + 1.
        gen_delays = self.delays[: cfg.dep_q + 1]
        read = ((offset[:, None] - cfg.max_delay + gen_delays) % ring)[..., None]
        frame = state["tokens"][:, : cfg.dep_q + 1].gather(2, read)[..., 0]
        return StepOutput(text=text, audio=frame[:, 1:], valid=offset > cfg.max_delay, text_logits=text_logits)

    # -- training --------------------------------------------------------------------------------
    def delayed_inputs(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames [B, 1 + n_q, T] (text, model audio, user audio; no delays) -> the input tokens each step
        reads [B, 1 + n_q, T], exactly as `step` would build them: generated streams lag one step behind
        their delayed layout, user streams do not, and initial tokens fill where a delay has not elapsed."""
        cfg, t = self.cfg, frames.shape[-1]
        steps = torch.arange(t, device=frames.device)
        inputs = torch.empty_like(frames)
        for k, delay in enumerate(cfg.delays):
            lag = delay + (1 if k <= cfg.dep_q else 0)
            src = (steps - lag).clamp(min=0)
            initial = cfg.text_card if k == 0 else cfg.card
            inputs[:, k] = torch.where(steps <= delay, initial, frames[:, k, src])
        return inputs

    def forward(self, frames: torch.Tensor, vision: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced pass for training. frames [B, 1 + n_q, T]; vision tokens [B, vision_tokens, vision_dim].

        Returns text logits [B, T, text_card] (step t predicts text frame t) and audio logits
        [B, dep_q, T, card] (step t predicts model audio frame t - delay_k; see `targets`)."""
        cfg = self.cfg
        state = self.init_state(frames.shape[0])
        if vision is not None:
            k, v = self.vision.keys_values(vision.to(self._param().dtype))
            state["vision"] = {"k": k, "v": v, "on": torch.ones(frames.shape[0], dtype=torch.bool, device=k.device)}
        out = self.temporal(self.delayed_inputs(frames), state)  # [B, T, dim]
        text_logits = self.text_linear(out)
        targets = self.targets(frames)
        b, t = out.shape[:2]
        flat = out.reshape(b * t, 1, -1)
        previous = [targets[:, 0]] + [targets[:, k] for k in range(1, cfg.dep_q)]  # text, then each stream's
        x = torch.cat([self.depformer_in[k](flat)
                       + embed(self.depformer_text_emb if k == 0 else self.depformer_emb[k - 1],
                               previous[k].reshape(b * t, 1).clamp(min=0))
                       for k in range(cfg.dep_q)], dim=1)  # [B*T, dep_q, D]
        for layer in self.depformer:
            x = layer(x, 0, {})
        audio_logits = torch.stack([self.linears[k](x[:, k]) for k in range(cfg.dep_q)], dim=1)
        return text_logits, audio_logits.view(b, t, cfg.dep_q, -1).transpose(1, 2)

    def targets(self, frames: torch.Tensor) -> torch.Tensor:
        """What each step generates [B, 1 + dep_q, T]: text frame t and model audio frame t - delay_k
        (-100, ignored by the loss, before a stream's delay has elapsed)."""
        cfg, t = self.cfg, frames.shape[-1]
        steps = torch.arange(t, device=frames.device)
        out = torch.empty_like(frames[:, : cfg.dep_q + 1])
        for k in range(cfg.dep_q + 1):
            src = (steps - cfg.delays[k]).clamp(min=0)
            out[:, k] = torch.where(steps < cfg.delays[k], -100, frames[:, k, src])
        return out
