# Seeds and input bounds that the campaign scripts share (sourced, with
# $root set to the repository root): the longest input worth mutating per
# target, and seed_fixtures, which adds the project's own files (experiment
# configs, shipped traces, the BurstGPT sample, a calibration raw file), cut
# to that length, to a target's corpus.

# Longest input worth mutating: a few KB covers every syntax the readers
# know (a header, quoting, several rows or keys); longer inputs only slow
# each execution down.
max_len_of() {
  case $1 in
    costmodel) echo 256 ;;
    workload) echo 1024 ;;
    calib_db) echo 1024 ;;
    *) echo 4096 ;;
  esac
}

# head -c cut to whole lines, so a fixture stays a valid file.
head_lines() { head -c "$2" "$1" | sed '$d'; }

seed_fixtures() {
  local t=$1 dir=$2 len=$3 f
  case $t in
    config)
      for f in "$root"/experiments/*/*.yaml "$root"/experiments/*/*/*.yaml; do
        [ -f "$f" ] && head -c "$len" "$f" >"$dir/fixture-$(basename "$(dirname "$f")")-$(basename "$f")"
      done ;;
    trace_csv)
      for f in "$root"/data/traces/*.csv; do head_lines "$f" "$len" >"$dir/fixture-$(basename "$f")"; done ;;
    import_burstgpt)
      { printf '\0\0\0\0\0\0'; head_lines "$root/tests/fixtures/burstgpt-sample.csv" $((len - 6)); } >"$dir/fixture-sample" ;;
    import_azure)
      # The Azure format is TIMESTAMP,ContextTokens,GeneratedTokens.
      { printf '\0\0\0\0\0\0'; printf 'TIMESTAMP,ContextTokens,GeneratedTokens\n';
        tail -n +2 "$root/data/traces/azure-code.csv" | head -40 |
          awk -F, '{ s = int($1); printf "2023-11-16 18:%02d:%02d.%06d0,%d,%d\n", s / 60, s % 60, ($1 - s) * 1e6, $2, $3 }'; } >"$dir/fixture-code" ;;
    import_mooncake)
      # Mooncake's JSONL: timestamp in ms, lengths, and the prompt's block
      # hashes (shared prefixes), rebuilt from the shipped trace.
      { printf '\0\0\0\0\0\0'
        tail -n +2 "$root/data/traces/mooncake-conversation-15min.csv" | head -30 |
          awk -F, '{ printf "{\"timestamp\": %d, \"input_length\": %d, \"output_length\": %d, \"hash_ids\": [%d, %d]}\n",
                     $1 * 1000, $2, $3, NR % 4, 100 + NR }'; } >"$dir/fixture-conversation" ;;
    calib_raw)
      for f in "$root"/data/calibration/raw-h200-llama2-7b.csv; do head_lines "$f" "$len" >"$dir/fixture-$(basename "$f")"; done ;;
  esac
}
