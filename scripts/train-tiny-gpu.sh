#!/usr/bin/env bash
# Trains tutti-tiny's vision encoder and LM on one GPU in a fixed time (default 540 s): how the shipped
# vision.safetensors and lm.safetensors were made (docs/training.md). The vision recipe and the rendering of
# the LM's dialogues run side by side (the GPU encodes the speech, the CPU cores draw it); then the LM's step
# rate is measured and its schedule sized to the time left. Everything lands in $RUN (default runs/gpu).
#   scripts/train-tiny-gpu.sh [seconds]    env (defaults below): RUN, PYTHON, DEVICE, *_RECIPE, *_INIT, CODEC, *_WORKERS
set -euo pipefail
BUDGET=${1:-540}
RUN=${RUN:-runs/gpu}
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
CORES=$(nproc)
RENDER_WORKERS=${RENDER_WORKERS:-$(( CORES > 6 ? CORES - 4 : 1 ))}
LOADER_WORKERS=${LOADER_WORKERS:-$(( CORES > 6 ? 3 : 1 ))}
VISION_STEPS=${VISION_STEPS:-1750}
LM_RECIPE=${LM_RECIPE:-tiny-gpu}
VISION_RECIPE=${VISION_RECIPE:-tiny-cells}
SEED=${SEED:-1}  # dialogues the shipped LM has never seen (it was trained on seed 0's)
VISION_INIT=${VISION_INIT-assistant/weights/tutti-tiny/vision.safetensors}  # empty: start from random weights
LM_INIT=${LM_INIT-assistant/weights/tutti-tiny/lm.safetensors}
CODEC=${CODEC:-assistant/weights/tutti-tiny/codec.safetensors}  # frozen: the LM's audio tokens are its codes
mkdir -p "$RUN"
train() { "$PY" -m assistant.cli train "$@"; }
left() { echo $(( BUDGET - SECONDS )); }

lm=(lm --recipe "$LM_RECIPE" --seed "$SEED" --codec "$CODEC" ${LM_INIT:+--init "$LM_INIT"} --device "$DEVICE" --workers "$RENDER_WORKERS")
timeout $(( BUDGET * 45 / 100 )) "$PY" -m assistant.cli train vision --recipe "$VISION_RECIPE" --out "$RUN/vision" \
    ${VISION_INIT:+--init "$VISION_INIT"} --device "$DEVICE" --steps "$VISION_STEPS" --workers "$LOADER_WORKERS" \
    > "$RUN/vision.log" 2>&1 &
vision=$!
train "${lm[@]}" --out "$RUN/lm" --until 0 > "$RUN/render.log" 2>&1 &
render=$!
fail() { tail -n 30 "$RUN/$1.log"; kill $vision $render 2>/dev/null; exit 1; }
while kill -0 $render 2>/dev/null; do  # fail fast: a vision run that died before its first logged step failed
  kill -0 $vision 2>/dev/null || grep -q "vision step" "$RUN/vision.log" || fail vision
  sleep 2
done
wait $render || fail render
wait $vision || echo "vision stopped early (its last export stands): $(tail -n 1 "$RUN/vision.log")"
echo "rendered and vision done at ${SECONDS}s"
[ -f "$RUN/vision/vision.safetensors" ] || { echo "no vision weights"; exit 1; }

# the LM's step rate on this machine, from a short throwaway run on the same data
mkdir -p "$RUN/probe" && ln -sf "$(realpath "$RUN"/lm)"/lm-*.pt "$RUN/probe/"
train "${lm[@]}" --vision "$RUN/vision/vision.safetensors" --out "$RUN/probe" --steps "${PROBE_STEPS:-150}" \
    > "$RUN/probe.log" 2>&1 || { cat "$RUN/probe.log"; exit 1; }
rate=$(grep -o '[0-9.]* steps/s' "$RUN/probe.log" | tail -1 | cut -d' ' -f1)
load=30  # seconds to start up and load the dialogues
steps=$("$PY" -c "print(max(100, int($rate * ($(left) - $load - 25) * 0.92)))")
echo "LM: $rate steps/s; training $steps steps in the $(left) s left"
timeout $(( $(left) - 10 )) "$PY" -m assistant.cli train "${lm[@]}" --vision "$RUN/vision/vision.safetensors" \
    --out "$RUN/lm" --steps "$steps" > "$RUN/lm.log" 2>&1 || echo "LM stopped at its time limit (its last export stands)"
echo "done at ${SECONDS}s"
