"""The streaming LM: batching, the ring cache, vision cross-attention, int8, bad input, checkpoints."""
from __future__ import annotations

import pytest
import torch

from assistant.model.checkpoint import load_lm, save_lm
from assistant.model.config import lm_preset
from assistant.model.layers import Int8Linear
from assistant.model.lm import ModelInputError, StreamingLM
from core.errors import CheckpointError
from core.state import leaves, map_state, reset_rows

CFG = lm_preset("test")


@pytest.fixture
def model() -> StreamingLM:
    torch.manual_seed(0)
    m = StreamingLM(CFG).eval()
    with torch.no_grad():  # open the vision gates so that vision visibly matters
        for layer in m.transformer:
            layer.gate.linear_out.weight.normal_(0, 1.0)
    return m


def user_codes(steps: int, batch: int, seed: int) -> torch.Tensor:
    return torch.randint(0, CFG.card, (steps, batch, CFG.n_user), generator=torch.Generator().manual_seed(seed))


def fresh(model: StreamingLM, seed: int) -> dict:
    state = model.init_state(1)
    state["seed"][0] = seed
    return state


def test_a_row_is_the_same_alone_or_in_a_changing_batch(model):
    """As the engine holds sessions: rows of one preallocated state, reset in place when a session joins, and
    each step runs on the first rows in use (a free row among them is stepped with filler input)."""
    steps = 14
    a_in, b_in, c_in = user_codes(steps, 1, 1), user_codes(steps, 1, 2), user_codes(steps, 1, 3)
    state = fresh(model, 7)
    alone = [model.step(a_in[t], state) for t in range(steps)]

    state = model.init_state(3)
    state["seed"][0] = 7
    together = []
    for t in range(steps):
        if t in (3, 5):  # b joins row 1, then c row 2
            row = 1 if t == 3 else 2
            reset_rows(state, torch.arange(3) == row)
            state["seed"][row] = 7 + row
        b = b_in[t] if 3 <= t < 9 else torch.zeros_like(b_in[t])  # b leaves at step 9: its row idles
        rows = [a_in[t]] + ([b] if t >= 3 else []) + ([c_in[t]] if t >= 5 else [])
        together.append(model.step(torch.cat(rows), map_state(state, lambda x: x[:len(rows)])))
    for t, (x, y) in enumerate(zip(alone, together)):
        assert torch.equal(x.text, y.text[:1]) and torch.equal(x.audio, y.audio[:1]), f"step {t}"
        assert torch.allclose(x.text_logits, y.text_logits[:1], atol=1e-5)
    assert len({int(o.text[0]) for o in alone}) > 1, "sampling looks degenerate"


def test_reset_row_restarts_only_that_session(model):
    state = model.init_state(2)
    state["seed"][:] = torch.tensor([4, 5])
    codes = user_codes(6, 2, 4)
    for t in range(3):
        model.step(codes[t], state)
    reset_rows(state, torch.tensor([False, True]))
    state["seed"][1] = 5
    again = fresh(model, 5)
    for t in range(3, 6):
        out = model.step(codes[t], state)
        assert torch.equal(out.audio[1:], model.step(codes[t][1:], again).audio)


def test_ring_cache_runs_past_context_with_flat_memory_and_equals_a_windowed_pass(model):
    torch.manual_seed(0)
    steps = 3 * CFG.context + 2
    inputs = torch.randint(0, CFG.card, (2, CFG.n_q + 1, steps))
    inputs[:, 0] = inputs[:, 0] % CFG.text_card
    state = model.init_state(2)
    sizes, outs = set(), []
    with torch.no_grad():
        for t in range(steps):
            outs.append(model.temporal(inputs[:, :, t:t + 1], state))
            sizes.add(sum(x.numel() for x in leaves(state)))
        offline = model.temporal(inputs, model.init_state(2))  # all steps at once, banded causal mask
    assert len(sizes) == 1
    assert torch.allclose(torch.cat(outs, dim=1), offline, atol=1e-5)


def test_sparse_vision_update_equals_full_recompute(model):
    torch.manual_seed(0)
    first, second = torch.randn(CFG.vision_tokens, CFG.vision_dim), torch.randn(CFG.vision_tokens, CFG.vision_dim)
    changed = torch.tensor([1, 4, 7])
    moved = first.clone()
    moved[changed] = second[changed]
    sparse, full = model.init_state(1), model.init_state(1)
    with torch.no_grad():
        model.update_vision(sparse, 0, first)
        model.update_vision(sparse, 0, moved, changed=changed)
        model.update_vision(full, 0, moved)
    assert torch.allclose(sparse["vision"]["k"], full["vision"]["k"], atol=1e-6)
    assert torch.allclose(sparse["vision"]["v"], full["vision"]["v"], atol=1e-6)
    codes = user_codes(4, 1, 0)
    for t in range(4):
        a, b = model.step(codes[t], sparse, greedy=True), model.step(codes[t], full, greedy=True)
        assert torch.allclose(a.text_logits, b.text_logits, atol=1e-5)


def test_vision_changes_the_output_and_only_for_its_row(model):
    codes = user_codes(3, 2, 5)
    seen, blind = model.init_state(2), model.init_state(2)
    with torch.no_grad():
        model.update_vision(seen, 0, torch.randn(CFG.vision_tokens, CFG.vision_dim))
    for t in range(3):
        a, b = model.step(codes[t], seen, greedy=True), model.step(codes[t], blind, greedy=True)
        assert not torch.allclose(a.text_logits[0], b.text_logits[0])
        assert torch.equal(a.text_logits[1], b.text_logits[1])


def test_no_vision_equals_the_model_without_adapters_and_skips_the_path(model):
    plain = StreamingLM(CFG.with_(vision_dim=0, vision_tokens=0)).eval()
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if k in plain.state_dict()})
    calls = []
    original = model.vision.forward
    model.vision.forward = lambda *a: calls.append(1) or original(*a)
    codes = user_codes(5, 2, 6)
    s1, s2 = model.init_state(2), plain.init_state(2)
    for t in range(5):
        assert torch.equal(model.step(codes[t], s1, greedy=True).text_logits,
                           plain.step(codes[t], s2, greedy=True).text_logits)
    assert calls == []


def test_new_gates_start_nearly_closed():
    torch.manual_seed(0)
    m = StreamingLM(CFG)
    y = torch.randn(1, 1, CFG.dim)
    assert torch.allclose(m.transformer[0].gate(y), y * torch.sigmoid(torch.tensor(-4.0)))


def test_int8_logits_stay_close(model, tmp_path):
    path = tmp_path / "lm.safetensors"
    save_lm(model, path)
    q = load_lm(path, int8=True)
    assert any(isinstance(m, Int8Linear) for m in q.modules())
    torch.manual_seed(0)
    inputs = torch.randint(0, CFG.card, (2, CFG.n_q + 1, 12))  # teacher-forced: both see the same tokens
    inputs[:, 0] %= CFG.text_card
    with torch.no_grad():
        a = model.text_linear(model.temporal(inputs, model.init_state(2)))
        b = q.text_linear(q.temporal(inputs, q.init_state(2)))
    error = ((a - b).norm() / a.norm()).item()
    print(f"int8 relative error of text logits: {error:.4f}")
    assert 0 < error < 0.02


def test_own_format_round_trip(model, tmp_path):
    path = tmp_path / "lm.safetensors"
    save_lm(model, path)
    loaded = load_lm(path)
    assert loaded.cfg == CFG
    codes = user_codes(3, 1, 8)
    s1, s2 = model.init_state(1), loaded.init_state(1)
    for t in range(3):
        assert torch.equal(model.step(codes[t], s1, greedy=True).audio, loaded.step(codes[t], s2, greedy=True).audio)


@pytest.mark.parametrize("codes, message", [
    (torch.zeros(2, CFG.n_user + 1, dtype=torch.long), "shaped"),
    (torch.zeros(3, CFG.n_user, dtype=torch.long), "shaped"),
    (torch.full((2, CFG.n_user), CFG.card), "must lie in"),
    (torch.full((2, CFG.n_user), -2), "must lie in"),
    (torch.zeros(2, CFG.n_user), "integer"),
])
def test_bad_user_codes(model, codes, message):
    with pytest.raises(ModelInputError, match=message):
        model.step(codes, model.init_state(2))


def test_bad_vision_input(model):
    state = model.init_state(1)
    with pytest.raises(ModelInputError, match="shaped"):
        model.update_vision(state, 0, torch.zeros(CFG.vision_tokens + 1, CFG.vision_dim))
    model.update_vision(state, 0, torch.zeros(CFG.vision_tokens, CFG.vision_dim))
    with pytest.raises(ModelInputError, match="indices"):
        model.update_vision(state, 0, torch.zeros(CFG.vision_tokens, CFG.vision_dim), changed=torch.tensor([99]))
    plain = StreamingLM(CFG.with_(vision_dim=0, vision_tokens=0))
    with pytest.raises(ModelInputError, match="no vision"):
        plain.update_vision(plain.init_state(1), 0, torch.zeros(CFG.vision_tokens, CFG.vision_dim))


def test_bad_checkpoints(model, tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "public.safetensors"
    tensors = {k: v.contiguous() for k, v in model.state_dict().items() if not k.startswith("vision")}
    tensors.pop("linears.1.weight")
    save_file(tensors, str(path))
    with pytest.raises(CheckpointError, match=r"missing keys: linears\.1\.weight"):
        load_lm(path, config=CFG.with_(vision_dim=0, vision_tokens=0))
    tensors["linears.1.weight"] = torch.zeros(3, 3)
    tensors["depformer.layers.0.self_attn.in_proj_weight"] = torch.zeros(7, CFG.depformer_dim)
    save_file(tensors, str(path))
    with pytest.raises(CheckpointError, match="does not split into 2 streams"):
        load_lm(path, config=CFG.with_(vision_dim=0, vision_tokens=0))
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_lm(path)


def moshivis_layout(model: StreamingLM) -> dict[str, torch.Tensor]:
    """Our test model under MoshiVis' published key names (PyTorch export), written from the layout facts."""
    out = {}
    for key, value in model.state_dict().items():
        value = value.contiguous()
        if key.startswith("vision."):
            name = {"vision.proj.weight": "image_prefix.proj_xa.weight", "vision.proj.bias": "image_prefix.proj_xa.bias",
                    "vision.proj_norm.alpha": "image_prefix.norm_xa.alpha",
                    "vision.in_proj.weight": "llm.transformer.layers.0.cross_attention.mha.in_proj_weight",
                    "vision.out_proj.weight": "llm.transformer.layers.0.cross_attention.mha.out_proj.weight"}[key]
        elif ".gate.linear_" in key:
            layer, which = key.split(".")[1], "0" if "linear_in" in key else "2"
            name = f"llm.transformer.layers.{layer}.cross_attention.gate.alpha.{which}.weight"
        elif key.startswith("transformer."):
            layer, rest = key.split(".", 2)[1:]
            rest = rest.replace("self_attn.in_proj.weight", "self_attn.in_proj_weight")
            name = f"llm.transformer.layers.{layer}.{rest}"
        elif key.startswith("depformer."):
            layer, rest = key.split(".", 2)[1:]
            if rest.startswith(("in_projs", "out_projs")):
                continue  # stacked below
            name = f"depformer.layers.{layer}.{rest}"
        elif key.startswith("emb."):
            name = "audio_emb." + key[4:]
        elif key.startswith("linears."):
            name = "audio_linears." + key[8:]
        elif key.split(".")[0] in ("text_emb", "out_norm", "text_linear"):
            name = "llm." + key
        else:
            name = key
        out[name] = value
    for i, layer in enumerate(model.depformer):
        out[f"depformer.layers.{i}.self_attn.in_proj_weight"] = torch.cat([m.weight for m in layer.in_projs]).contiguous()
        out[f"depformer.layers.{i}.self_attn.out_proj.weight"] = torch.cat([m.weight for m in layer.out_projs]).contiguous()
    out["image_prefix.enc.model.embeddings.patch_embedding.weight"] = torch.zeros(2, 2)  # the SigLIP tower: skipped
    return out


def test_moshivis_layout_loads(model, tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "moshivis.safetensors"
    save_file(moshivis_layout(model), str(path))
    loaded = load_lm(path, config=CFG)
    tokens = torch.randn(CFG.vision_tokens, CFG.vision_dim)
    s1, s2 = model.init_state(1), loaded.init_state(1)
    model.update_vision(s1, 0, tokens)
    loaded.update_vision(s2, 0, tokens)
    codes = user_codes(3, 1, 9)
    for t in range(3):
        assert torch.equal(model.step(codes[t], s1, greedy=True).text_logits,
                           loaded.step(codes[t], s2, greedy=True).text_logits)


def test_teacher_forced_pass_equals_the_streaming_steps(model):
    """The training forward sees exactly what `step` sees: same text logits, and its audio logits pick the
    tokens greedy streaming generated, with vision on."""
    batch, steps = 2, 14
    vision = torch.randn(batch, CFG.vision_tokens, CFG.vision_dim)
    state = model.init_state(batch)
    for row in range(batch):
        model.update_vision(state, row, vision[row])
    user = user_codes(steps, batch, seed=3).permute(1, 2, 0)  # [batch, user codebooks, steps]
    texts, audio, logits = [], [], []
    for t in range(steps):
        out = model.step(user[:, :, t], state, greedy=True)
        texts.append(out.text), audio.append(out.audio), logits.append(out.text_logits)
    frames_n = steps - CFG.max_delay  # audio frames generated by the end, delays undone
    frames = torch.cat([torch.stack(texts, 1)[:, None, :frames_n], torch.stack(audio, 2)[..., CFG.max_delay:],
                        user[..., :frames_n]], dim=1)
    with torch.no_grad():
        text_logits, audio_logits = model(frames, vision)
    torch.testing.assert_close(text_logits, torch.stack(logits, 1)[:, :frames_n], rtol=1e-4, atol=1e-5)
    targets = model.targets(frames)[:, 1:]
    known = targets != -100
    assert known.float().mean() > 0.8
    assert torch.equal(audio_logits.argmax(-1)[known], targets[known])


def test_fp16_file_loads_into_an_fp32_model(model, tmp_path):
    save_lm(model, tmp_path / "half.safetensors", dtype=torch.float16)
    loaded = load_lm(tmp_path / "half.safetensors")
    assert next(loaded.parameters()).dtype == torch.float32
    for name, p in model.state_dict().items():
        if p.is_floating_point():
            torch.testing.assert_close(loaded.state_dict()[name], p.half().float())
