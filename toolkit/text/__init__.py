"""Text side: phoneme lexicon (espeak-ng via phonemizer), wordpieces, token sequence stores."""
