"""The training recipes' machinery on their smoke settings: every stage runs, resumes exactly, and trains
data-parallel across two processes (gloo). The real recipes run for hours and never in CI."""
from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from assistant.cli import main
from assistant.synth.scenes import COLOURS, SHAPES

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
ROOT = Path(__file__).resolve().parents[2]


def train(*args: str) -> int:
    return main(["train", *args])


def weights(path: Path) -> dict:
    return load_file(str(path))


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(bool((a[k] == b[k]).all()) for k in a)


def test_all_three_stages_train_export_and_plot(tmp_path):
    out = tmp_path / "run"
    plot = tmp_path / "docs" / "codec.svg"
    assert train("codec", "--recipe", "smoke", "--out", str(out), "--plot", str(plot)) == 0
    assert train("vision", "--recipe", "smoke", "--out", str(out)) == 0
    assert train("lm", "--recipe", "smoke", "--out", str(out), "--codec", str(out / "codec.safetensors"),
                 "--vision", str(out / "vision.safetensors")) == 0
    for name in ("codec", "vision", "lm"):
        assert (out / f"{name}.safetensors").stat().st_size > 0
        rows = (out / f"{name}-loss.tsv").read_text().splitlines()
        assert [int(r.split("\t")[0]) for r in rows] == sorted(int(r.split("\t")[0]) for r in rows) and rows
    assert plot.read_text().startswith("<svg") and "polyline" in plot.read_text()
    assert (out / "tokenizer.model").exists()


def test_a_stopped_run_resumes_to_the_same_weights(tmp_path):
    assert train("vision", "--recipe", "smoke", "--out", str(tmp_path / "straight")) == 0
    assert train("vision", "--recipe", "smoke", "--out", str(tmp_path / "stopped"), "--until", "2") == 0
    halfway = weights(tmp_path / "stopped" / "vision.safetensors")
    assert train("vision", "--recipe", "smoke", "--out", str(tmp_path / "stopped")) == 0
    resumed = weights(tmp_path / "stopped" / "vision.safetensors")
    straight = weights(tmp_path / "straight" / "vision.safetensors")
    assert not same(halfway, straight)
    assert same(resumed, straight)


def test_unknown_recipe_is_a_clear_error(tmp_path, capsys):
    assert train("codec", "--recipe", "huge", "--out", str(tmp_path)) == 2
    assert "unknown codec recipe 'huge'" in capsys.readouterr().err


def test_two_processes_train_data_parallel_on_gloo(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29517",
                          "-m", "assistant.cli", "train", "vision", "--recipe", "smoke", "--out", str(tmp_path / "ddp")],
                         capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "on 2 process(es)" in run.stderr
    assert train("vision", "--recipe", "smoke", "--out", str(tmp_path / "single")) == 0
    # The second process's batches reached the weights through the averaged gradients.
    assert not same(weights(tmp_path / "ddp" / "vision.safetensors"), weights(tmp_path / "single" / "vision.safetensors"))


def test_decoder_fine_tuning_keeps_the_codes(tmp_path):
    base, tuned = tmp_path / "base", tmp_path / "tuned"
    assert train("codec", "--recipe", "smoke", "--out", str(base)) == 0
    assert train("codec", "--recipe", "smoke-decoder", "--out", str(tuned), "--codec", str(base / "codec.safetensors")) == 0
    before, after = weights(base / "codec.safetensors"), weights(tuned / "codec.safetensors")
    fixed = [k for k in before if k.startswith(("encoder", "downsample", "quantizer"))]
    trained = [k for k in before if k.startswith(("decoder", "upsample"))]
    assert fixed and trained
    assert all(torch.equal(before[k], after[k]) for k in fixed)
    assert any(not torch.equal(before[k], after[k]) for k in trained)


def test_lm_warm_starts_from_earlier_weights(tmp_path, capsys):
    from assistant.model.checkpoint import save_lm
    from assistant.model.config import lm_preset
    from assistant.model.lm import StreamingLM

    out = tmp_path / "run"
    assert train("codec", "--recipe", "smoke", "--out", str(out)) == 0
    assert train("vision", "--recipe", "smoke", "--out", str(out)) == 0
    inputs = ["--recipe", "smoke", "--codec", str(out / "codec.safetensors"), "--vision", str(out / "vision.safetensors")]
    assert train("lm", *inputs, "--out", str(out)) == 0
    assert train("lm", *inputs, "--out", str(tmp_path / "warm"), "--init", str(out / "lm.safetensors")) == 0
    assert train("lm", *inputs, "--out", str(tmp_path / "cold")) == 0

    def first_loss(run: Path) -> float:
        return float((run / "lm-loss.tsv").read_text().splitlines()[0].split("\t")[1])

    # The same batches, from weights that have already learnt them: a lower loss from the first log on.
    assert first_loss(tmp_path / "warm") < first_loss(tmp_path / "cold")
    other = tmp_path / "other.safetensors"
    save_lm(StreamingLM(lm_preset("test")), other)
    assert train("lm", *inputs, "--out", str(tmp_path / "bad"), "--init", str(other)) == 2
    assert "its architecture is not recipe 'smoke'" in capsys.readouterr().err
    assert train("vision", "--recipe", "smoke", "--out", str(tmp_path / "v"), "--init", str(other)) == 2
    assert "does not fit this model" in capsys.readouterr().err


def test_vision_warm_starts_and_reads_each_cell(tmp_path, capsys):
    from assistant.synth.scenes import Scene
    from assistant.train.vision import RECIPES, cell_labels, patch_labels, scene_batch

    assert train("vision", "--recipe", "smoke", "--out", str(tmp_path / "first")) == 0
    start = tmp_path / "first" / "vision.safetensors"
    assert train("vision", "--recipe", "smoke", "--out", str(tmp_path / "warm"), "--init", str(start)) == 0
    first, warm = ((tmp_path / run / "vision-loss.tsv").read_text().splitlines() for run in ("first", "warm"))
    # The same batches again, from weights that have learnt them: a lower loss (the read-out starts afresh)
    assert float(warm[0].split("\t")[1]) < float(first[0].split("\t")[1])
    assert all("cells=" in r for r in warm)  # the smoke recipe trains the per-cell read-out
    assert train("vision", "--recipe", "tiny-cells", "--out", str(tmp_path / "bad"), "--init", str(start)) == 2
    assert "its configuration is not recipe 'tiny-cells'" in capsys.readouterr().err
    # labels: each item's cell names its shape and colour, the other cells are empty; patches near a cell's
    # centre (here, 8 x 8 patches: one or two per axis) carry their cell's labels, the others are ignored
    scene = Scene.draw(np.random.default_rng(5), count=2)
    cells = cell_labels(scene)
    for item in scene.items:
        assert cells[item.row * 3 + item.col].tolist() == [1 + SHAPES.index(item.shape), 1 + list(COLOURS).index(item.colour)]
    assert int((cells.sum(1) > 0).sum()) == 2
    patches = patch_labels(scene, 8).view(8, 8, 2)
    near = {0: [1], 1: [3, 4], 2: [6]}
    for row in range(3):
        for col in range(3):
            for y in near[row]:
                for x in near[col]:
                    assert patches[y, x].tolist() == cells[row * 3 + col].tolist()
    assert int((patches[..., 0] != -100).sum()) == 16
    smoke = RECIPES["smoke"]
    assert scene_batch(smoke, 0, 0, 0)[2].shape == (smoke.batch, smoke.config.grid ** 2, 2)


def test_dense_labels_cover_each_shape_where_it_has_moved():
    from assistant.synth.scenes import Item, Scene
    from assistant.train.vision import RECIPES, inside_labels, scene_batch

    star = Item("star", "red", col=0, row=0, dx=0.0, dy=0.0, size=0.4, angle=0.0)
    circle = Item("circle", "blue", col=2, row=2, dx=0.0, dy=0.0, size=0.25, angle=0.0)
    scene = Scene((star, circle), ((90, 90, 90), (120, 120, 120)), 2.0, motion=(0.1, 0.0))
    # 8 x 8 patches, centres at (k + 0.5) * 3 / 8 cells; the star (centre 0.5, 0.5 at t=0) covers the patches
    # whose centres lie within 0.9 x 0.4 of it, and the circle (centre 2.5, 2.5) the one on its centre
    red_star = [1 + SHAPES.index("star"), 1 + list(COLOURS).index("red")]
    blue_circle = [1 + SHAPES.index("circle"), 1 + list(COLOURS).index("blue")]
    for t, star_patches, circle_patches in ((0.0, {(0, 1), (1, 0), (1, 1)}, {(6, 6)}),
                                            (2.0, {(0, 1), (1, 1), (1, 2)}, {(6, 7)})):  # 0.2 cells to the right
        labels = inside_labels(scene, 8, t).view(8, 8, 2)
        covered = {(y, x) for y in range(8) for x in range(8) if labels[y, x, 0] > 0}
        assert covered == star_patches | circle_patches, t
        assert all(labels[p].tolist() == red_star for p in star_patches)
        assert all(labels[p].tolist() == blue_circle for p in circle_patches)
    dense = dataclasses.replace(RECIPES["smoke"], inside=True)
    labels = scene_batch(dense, 0, 0, 0)[2]
    assert labels.shape == (dense.batch, dense.config.grid ** 2, 2) and bool((labels >= 0).all())
    assert RECIPES["tiny-shapes"].inside and not RECIPES["tiny-cells"].inside


def test_dialogues_render_once_and_any_vision_encoder_reads_them(tmp_path):
    out = tmp_path / "run"
    assert train("codec", "--recipe", "smoke", "--out", str(out)) == 0
    assert train("vision", "--recipe", "smoke", "--out", str(out)) == 0
    assert train("vision", "--recipe", "smoke", "--out", str(tmp_path / "v2"), "--seed", "1") == 0
    inputs = ["--recipe", "smoke", "--codec", str(out / "codec.safetensors")]
    assert train("lm", *inputs, "--out", str(out), "--vision", str(out / "vision.safetensors")) == 0
    shard, = out.glob("lm-*.pt")
    made, first = shard.stat().st_mtime_ns, weights(out / "lm.safetensors")
    # the cache holds pixels, not tokens: a new vision encoder renders nothing anew, yet the LM reads its tokens
    assert train("lm", *inputs, "--out", str(out), "--vision", str(tmp_path / "v2" / "vision.safetensors"), "--restart") == 0
    assert list(out.glob("lm-*.pt")) == [shard] and shard.stat().st_mtime_ns == made
    assert not same(weights(out / "lm.safetensors"), first)
    # worker processes render exactly what the training process renders
    other = tmp_path / "workers"
    assert train("lm", *inputs, "--out", str(other), "--vision", str(out / "vision.safetensors"), "--workers", "2") == 0
    mine, theirs = torch.load(shard), torch.load(other / shard.name)
    assert mine["pixels"].dtype == torch.uint8 and mine["frames"].shape[0] == mine["pixels"].shape[0] == 3
    assert all(torch.equal(mine[k], theirs[k]) for k in ("frames", "pixels"))
    assert same(weights(other / "lm.safetensors"), first)


def test_the_vision_encoder_trains_with_the_lm_only_when_the_recipe_says_so(tmp_path):
    out = tmp_path / "run"
    assert train("codec", "--recipe", "smoke", "--out", str(out)) == 0
    assert train("vision", "--recipe", "smoke", "--out", str(out / "v")) == 0
    inputs = ["--codec", str(out / "codec.safetensors"), "--vision", str(out / "v" / "vision.safetensors")]
    assert train("lm", "--recipe", "smoke", "--out", str(out / "frozen"), *inputs) == 0
    assert not (out / "frozen" / "vision.safetensors").exists()
    assert train("lm", "--recipe", "smoke-vision", "--out", str(out / "tuned"), *inputs) == 0
    start, tuned = weights(out / "v" / "vision.safetensors"), weights(out / "tuned" / "vision.safetensors")
    assert start.keys() == tuned.keys() and not same(start, tuned)
    # the tuned encoder loads as any vision checkpoint does, and other voices render other dialogues
    from encoders.siglip import load_vision
    assert load_vision(out / "tuned" / "vision.safetensors").cfg == load_vision(out / "v" / "vision.safetensors").cfg
    frozen, = (out / "frozen").glob("lm-*.pt")
    more, = (out / "tuned").glob("lm-*.pt")
    assert frozen.name != more.name
    assert not torch.equal(torch.load(frozen)["frames"], torch.load(more)["frames"])


def test_the_per_patch_read_out_trains_the_encoder_along_with_the_lm_and_resumes(tmp_path, monkeypatch, capsys):
    from assistant.train.lm import RECIPES

    out = tmp_path / "run"
    assert train("codec", "--recipe", "smoke", "--out", str(out)) == 0
    assert train("vision", "--recipe", "smoke", "--out", str(out / "v")) == 0
    inputs = ["--codec", str(out / "codec.safetensors"), "--vision", str(out / "v" / "vision.safetensors")]
    assert train("lm", "--recipe", "smoke-vision", "--out", str(out / "plain"), *inputs) == 0
    assert train("lm", "--recipe", "smoke-readout", "--out", str(out / "read"), *inputs) == 0
    assert train("lm", "--recipe", "smoke-readout", "--out", str(out / "stopped"), "--until", "2", *inputs) == 0
    assert train("lm", "--recipe", "smoke-readout", "--out", str(out / "stopped"), *inputs) == 0
    assert all("cells=" in row for row in (out / "read" / "lm-loss.tsv").read_text().splitlines())
    assert not any("cells=" in row for row in (out / "plain" / "lm-loss.tsv").read_text().splitlines())
    plain, read = weights(out / "plain" / "vision.safetensors"), weights(out / "read" / "vision.safetensors")
    # the same dialogues in the same order: only the read-out's gradients tell the two encoders apart
    assert plain.keys() == read.keys() and not same(plain, read)
    # the read-out head is checkpointed with the LM (a resumed run ends where a straight one does) but not exported
    assert same(read, weights(out / "stopped" / "vision.safetensors"))
    assert same(weights(out / "read" / "lm.safetensors"), weights(out / "stopped" / "lm.safetensors"))
    assert not any("readout" in k or "patches" in k for k in read)
    monkeypatch.setitem(RECIPES, "frozen-readout", dataclasses.replace(RECIPES["smoke"], readout=1.0))
    assert train("lm", "--recipe", "frozen-readout", "--out", str(out / "bad"), *inputs) == 2
    assert "a read-out needs the vision encoder trained along" in capsys.readouterr().err


def test_batches_drawn_ahead_by_worker_processes_train_the_same_weights(tmp_path):
    assert train("vision", "--recipe", "smoke", "--out", str(tmp_path / "here")) == 0
    assert train("vision", "--recipe", "smoke", "--out", str(tmp_path / "ahead"), "--workers", "2") == 0
    assert same(weights(tmp_path / "here" / "vision.safetensors"), weights(tmp_path / "ahead" / "vision.safetensors"))


def test_the_user_stream_is_encoded_as_the_engine_encodes_it(tmp_path):
    """The LM trains on the codes the engine hands it live: the question inside dithered quiet, encoded from
    the session's start (pasting separately encoded questions into encoded quiet cost answers: docs/history.md)."""
    from assistant.train.lm import RECIPES, Renderer, train_tokenizer
    from core.audio import dither

    from ..conftest import random_codec

    codec, frames, first = random_codec(), 12, 3
    renderer = Renderer(codec, train_tokenizer(tmp_path / "tokenizer.model"), RECIPES["smoke"].config, frames, 56)
    question = torch.randn(codec.frame_size * 5 + 7) * 0.1
    offline = renderer._streams([(first, question)], frames, np.random.default_rng(1))[0]
    wav = torch.zeros(frames * codec.frame_size)
    wav[first * codec.frame_size: first * codec.frame_size + len(question)] = question
    wav = dither(wav, np.random.default_rng(1))[None, None]
    state = codec.init_encode_state(1)
    with torch.no_grad():
        live = torch.cat([codec.encode_step(wav[..., i * codec.frame_size: (i + 1) * codec.frame_size], state)
                          for i in range(frames)], -1)[0]
    assert offline.shape == (codec.cfg.num_codebooks, frames)
    assert torch.equal(offline, live)
    # the question is in it: the same stream without the question differs from the question's first frame on
    quiet = renderer._streams([(first, torch.zeros(0))], frames, np.random.default_rng(1))[0]
    assert torch.equal(quiet[:, :first], offline[:, :first]) and not torch.equal(quiet[:, first:], offline[:, first:])


def test_every_run_gives_the_assistant_the_same_codes(tmp_path):
    """The LM learns one set of codes per word whatever seed renders its dialogues: a word's finer codes follow
    the dither, and when each run's seed dithered them its own way a warm-started LM had to learn its speech
    again."""
    from assistant.synth.speech import ASSISTANT, espeak
    from assistant.train.lm import RECIPES, Renderer, train_tokenizer
    from assistant.weights import BUNDLED
    from codec import load_codec

    codec, tokenizer = load_codec(BUNDLED / "codec.safetensors"), train_tokenizer(tmp_path / "tokenizer.model")
    smoke = RECIPES["smoke"]
    a, b = (Renderer(codec, tokenizer, smoke.config, smoke.frames, 56, seed=seed) for seed in (0, 1))
    assert torch.equal(a.silence, b.silence) and torch.equal(a.word("circle"), b.word("circle"))
    # what is at stake: the same word under another dither
    speech = [espeak("circle", ASSISTANT, codec.sample_rate) * 0.7]
    assert not torch.equal(a._encode(speech, np.random.default_rng(0))[0], a._encode(speech, np.random.default_rng(1))[0])
    # the users' streams still follow the seed
    assert not torch.equal(a.examples(range(1))["frames"], b.examples(range(1))["frames"])


def recipe_job(recipe_name: str, tmp_path: Path):
    """A 56 px render job on the bundled codec with every field the recipe sets, as `stage` builds it."""
    from assistant.train.lm import RECIPES, RenderJob, train_tokenizer
    from assistant.weights import BUNDLED

    train_tokenizer(tmp_path / "tokenizer.model")
    recipe = RECIPES[recipe_name]
    return recipe, RenderJob.of(recipe, BUNDLED / "codec.safetensors", tmp_path / "tokenizer.model", 56, 0)


def rendered_as(job, **settings):
    """The job with some of its render settings changed."""
    return dataclasses.replace(job, render=dataclasses.replace(job.render, **settings))


def assert_cached_apart(recipe, jobs, tmp_path: Path) -> None:
    from assistant.train.lm import dialogues

    one = dataclasses.replace(recipe, examples=1)
    for job in jobs:
        dialogues(one, job, tmp_path)
    assert len(list(tmp_path.glob("lm-*.pt"))) == len(jobs)


def test_a_recipe_weights_up_the_questions_it_names(tmp_path):
    """"tiny-scenes" asks "where" three times as often as a social question; its dialogues are cached apart."""
    recipe, weighted = recipe_job("tiny-scenes", tmp_path)
    even = rendered_as(weighted, intents=())

    def places(job):
        renderer = job.renderer()
        said = [renderer.layout(np.random.default_rng([0, i]))[3] for i in range(120)]
        return sum(bool({"left", "right", "top", "bottom", "middle"} & set(words)) for words in said)

    drawn_evenly, drawn_weighted = places(even), places(weighted)
    assert drawn_evenly >= 5 and drawn_weighted >= 1.6 * drawn_evenly, (drawn_evenly, drawn_weighted)
    assert_cached_apart(recipe, (even, weighted), tmp_path)


def test_a_warping_recipe_plays_the_same_questions_slower_or_faster(tmp_path):
    """"tiny-warp" draws each turn's question and voice as before, then warps it; its dialogues are cached apart."""
    recipe, warped = recipe_job("tiny-warp", tmp_path)
    plain = rendered_as(warped, warp=0.0)
    rendered = [[r.layout(np.random.default_rng([0, i])) for i in range(8)]
                for r in (plain.renderer(), warped.renderer())]
    ratios = [len(w[1]) / len(p[1]) for p, w in zip(*rendered)]
    assert all(p[3] == w[3] for p, w in zip(*rendered))  # the same answers: the same turns were drawn
    assert all(0.86 < r < 1.14 for r in ratios) and max(ratios) - min(ratios) > 0.03, ratios
    assert_cached_apart(recipe, (plain, warped), tmp_path)


def test_a_wh_recipe_asks_the_same_questions_some_with_a_voiceless_wh(tmp_path):
    """"tiny-wh" draws each turn and voice as "tiny-scenes" does, then says some questions' "wh" as "hw"; its
    dialogues are cached apart."""
    recipe, hw = recipe_job("tiny-wh", tmp_path)
    plain = rendered_as(hw, wh=0.0)
    rendered = [[r.layout(np.random.default_rng([0, i])) for i in range(8)] for r in (plain.renderer(), hw.renderer())]
    assert all(p[3] == w[3] for p, w in zip(*rendered))  # the same answers: the same turns were drawn
    assert sum(len(p[1]) != len(w[1]) for p, w in zip(*rendered)) >= 2  # some said otherwise
    assert_cached_apart(recipe, (plain, hw), tmp_path)


def test_every_render_setting_names_the_dialogue_cache():
    """Dialogues rendered otherwise are cached apart: setting any field to another value changes the key, and so
    does setting it back."""
    from assistant.synth.speech import MORE_VOICES
    from assistant.train.lm import RenderSettings

    other = {"voices": MORE_VOICES, "intents": (("where", 3.0),), "warp": 0.12, "wh": 0.5}
    assert set(other) == {f.name for f in dataclasses.fields(RenderSettings)}  # a new setting needs a value here
    plain, changed = RenderSettings(), RenderSettings(**other)
    for start, values in ((plain, other), (changed, {name: getattr(plain, name) for name in other})):
        keys = {start.key()} | {dataclasses.replace(start, **{name: value}).key() for name, value in values.items()}
        assert len(keys) == 1 + len(values), keys


def test_dialogue_caches_rendered_before_keep_their_names(tmp_path):
    """Every recipe's cache files are named as the former, hand-written key named them, so caches already
    rendered stay valid."""
    from assistant.train.lm import LAYOUT, RECIPES, SHARD, RenderJob, fingerprint, shards
    from assistant.weights import BUNDLED

    def legacy(recipe, job) -> list[Path]:
        key = f"{fingerprint(job.codec)}-v{zlib.crc32(' '.join(job.render.voices).encode()):08x}"
        if job.render.intents:
            key += f"-i{zlib.crc32(repr(job.render.intents).encode()):08x}"
        if job.render.warp:
            key += f"-w{job.render.warp:g}"
        if job.render.wh:
            key += f"-h{job.render.wh:g}"
        return [tmp_path / f"lm-{LAYOUT}-{job.seed}-{key}-{job.image_size}px-{s}-{min(SHARD, recipe.examples - s)}.pt"
                for s in range(0, recipe.examples, SHARD)]

    for name, recipe in RECIPES.items():
        job = RenderJob.of(recipe, BUNDLED / "codec.safetensors", tmp_path / "tokenizer.model", 56, 1)
        assert [path for *_, path in shards(recipe, job, tmp_path)] == legacy(recipe, job), name


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
def test_a_run_on_the_gpu_resumes(tmp_path):
    out = tmp_path / "gpu"
    assert train("vision", "--recipe", "smoke", "--out", str(out), "--device", "cuda", "--until", "2") == 0
    assert train("vision", "--recipe", "smoke", "--out", str(out), "--device", "cuda") == 0
    assert [int(r.split("\t")[0]) for r in (out / "vision-loss.tsv").read_text().splitlines()] == [2, 4]


def test_two_runs_average_into_a_loadable_model(tmp_path, capsys):
    a, b, out = tmp_path / "a", tmp_path / "b", tmp_path / "mean"
    assert train("vision", "--recipe", "smoke", "--out", str(a)) == 0
    assert train("vision", "--recipe", "smoke", "--out", str(b), "--seed", "1") == 0
    assert main(["average", str(a), str(b), "--out", str(out)]) == 0
    x, y, mean = (weights(d / "vision.safetensors") for d in (a, b, out))
    assert mean.keys() == x.keys() and not same(x, y)
    assert all(torch.allclose(mean[k], (x[k] + y[k]) / 2, atol=1e-6) for k in x)
    assert main(["average", str(a), str(b), "--out", str(tmp_path / "a0"), "--weight", "0"]) == 0
    assert same(weights(tmp_path / "a0" / "vision.safetensors"), x)
    from encoders.siglip import load_vision
    assert load_vision(out / "vision.safetensors").cfg == load_vision(a / "vision.safetensors").cfg
    # another model's file, or a run lacking the files, is refused with a clear error and nothing written
    (tmp_path / "other").mkdir()
    save_file(y, tmp_path / "other" / "vision.safetensors", metadata={"format": "tutti-vision", "config": "{}"})
    assert main(["average", str(a), str(tmp_path / "other"), "--out", str(tmp_path / "bad")]) == 2
    assert "configs differ" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["average", str(a), str(tmp_path / "empty"), "--out", str(tmp_path / "bad")]) == 2
    assert "lacks vision.safetensors" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
