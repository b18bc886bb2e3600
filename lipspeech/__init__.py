"""lipspeech: silent talking-face video to speech ("Let There Be Sound", Kim, Kim & Chung, AAAI 2024)."""

__version__ = "0.1.0"

#: The package's layers, from the bottom: a module imports only from its own layer and those below it
#: (tests/test_layers.py reads this, docs/layout.md draws it). The base is core/ (with this module), the
#: commands are commands/ and the entry point cli.py; in between, one subpackage each. vision sits below
#: data because the SynthGRID generator places its faces with the vision landmarks.
LAYERS = (
    ("lipspeech", "lipspeech.core"),
    ("lipspeech.vision",),
    ("lipspeech.data",),
    ("lipspeech.features",),
    ("lipspeech.models",),
    ("lipspeech.training",),
    ("lipspeech.vocoder",),
    ("lipspeech.evaluation",),
    ("lipspeech.commands", "lipspeech.cli"),
)
