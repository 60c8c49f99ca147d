# Corpus roots. Nothing is downloaded at run time: point these at your copies.
#   MLS: holds mls_<language>/{train,dev,test}/{transcripts.txt,audio/} (Multilingual LibriSpeech)
#   CV:  holds <locale>/{clips/,train.tsv,dev.tsv,test.tsv} (Common Voice)
# Unpaired text, one sentence a line (plain or .gz), per language; a missing file means
# no text-only data for that language:
#   MLS: $MLS/mls_<language>/lm_text.txt.gz  (e.g. the MLS LM corpus' data.txt, gzipped)
#   CV:  $CV/<locale>/text_only.txt.gz
MLS=${MLS:-/data/mls}
CV=${CV:-/data/cv-corpus}
