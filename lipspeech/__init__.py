"""lipspeech: silent talking-face video to speech ("Let There Be Sound", Kim, Kim & Chung, AAAI 2024)."""

__version__ = "0.1.0"
