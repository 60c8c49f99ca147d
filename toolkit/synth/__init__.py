"""Embedded corpus synthesizer: espeak-ng TTS through ctypes, grammar sentences, corpus layouts."""
