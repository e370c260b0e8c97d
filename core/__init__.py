"""The shared core: what every stage (codec, vision, LM) and the runtime build on. It imports no stage.

- `attention`: streaming self-attention (RoPE, a ring KV cache per batch row, the step's masks).
- `state`: explicit streaming state (nested dicts of batch-first tensors) and its row operations.
- `checkpoint`: safetensors reading, key renaming, strict loading with named mismatches, our file format.
- `config`: the config dataclasses' base (JSON round trip) and named presets.
- `audio`: audio files, resampling (offline and streaming), int16 PCM conversion, dither.
- `errors`: one hierarchy, each error a message for the person who supplied the input::

    TuttiError
    ├── InputError (ValueError): bad input from a person, a file or the network
    │   ├── CodecInputError: audio or codes
    │   ├── FrameError: camera frames
    │   └── ModelInputError: tokens or vision tokens for the LM
    ├── CheckpointError (ValueError): a file missing, corrupt or not fitting the model
    └── EngineError (ValueError): a model combination or request the engine cannot serve
        └── MismatchError: stages that do not fit together (codec, LM and vision of a preset)

Layers above add their own kinds: the WebSocket protocol's `ProtocolError` (an InputError), the training
data's `SpeechError` (espeak-ng missing or failing).
"""
