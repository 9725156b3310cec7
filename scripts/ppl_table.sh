#!/usr/bin/env bash
# The WikiText-2 perplexity table of docs/results.md: compress SmolLM2-135M-Instruct with every method and
# setting, score each with `kick perplexity`, one row per setting in a TSV. Resumable: settings already in
# the TSV are skipped, so an interrupted run picks up where it stopped. Issue 5's `kick sweep` replaces
# this script; it stays as the record of how the table was made.
#
#   scripts/ppl_table.sh [--nsamples 32] [--seqlen 512] [--windows 16] [--out results/ppl_table.tsv]
set -euo pipefail

kick=${KICK_BIN:-build/apps/kick}
model=smollm2
nsamples=32
seqlen=512
windows=16
out=results/ppl_table.tsv
group=64   # SmolLM2's widths (576, 1536) are not multiples of 128; see docs/footguns.md
only=""
while (($#)); do
  case "$1" in
    --nsamples) nsamples=$2; shift 2 ;;
    --seqlen) seqlen=$2; shift 2 ;;
    --windows) windows=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --group-size) group=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;   # run the settings whose label matches this regex
    *) echo "ppl_table.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

calib=(--nsamples "$nsamples" --seqlen "$seqlen")
settings=("dense|")
for method in magnitude wanda sparsegpt; do
  extra=()
  [ "$method" = magnitude ] || extra=("${calib[@]}")
  for s in 0.1 0.2 0.3 0.4 0.5 0.6 0.7; do settings+=("$method $s|--method $method --sparsity $s ${extra[*]:-}"); done
  for p in 2:4 4:8; do settings+=("$method $p|--method $method --pattern $p ${extra[*]:-}"); done
done
for method in rtn gptq awq; do
  extra=()
  [ "$method" = rtn ] || extra=("${calib[@]}")
  for b in 8 4 3; do settings+=("$method w${b}g${group}|--method $method --bits $b --group-size $group ${extra[*]:-}"); done
done

mkdir -p "$(dirname "$out")"
[ -f "$out" ] || printf 'setting\tperplexity\tcompress_s\tcommand\n' >"$out"
work=$(mktemp -d "${TMPDIR:-/tmp}/kick-ppl.XXXXXX")
trap 'rm -rf "$work"' EXIT

for entry in "${settings[@]}"; do
  label=${entry%%|*}
  args=${entry#*|}
  [ -z "$only" ] || [[ "$label" =~ $only ]] || continue
  if cut -f1 "$out" | grep -qxF "$label"; then echo "ppl_table: $label done"; continue; fi
  target=$model
  seconds=0
  command="kick perplexity -m $model --max-windows $windows"
  if [ -n "$args" ]; then
    start=$(date +%s)
    # shellcheck disable=SC2086
    "$kick" compress -m "$model" $args -o "$work/model" --overwrite >"$work/compress.log" 2>&1 ||
      { echo "ppl_table: $label: compress failed:"; tail -3 "$work/compress.log"; exit 1; }
    seconds=$(($(date +%s) - start))
    target=$work/model
    command="kick compress -m $model $args -o DIR && kick perplexity -m DIR --max-windows $windows"
  fi
  ppl=$("$kick" perplexity -m "$target" --max-windows "$windows" 2>/dev/null | awk '$1 == "perplexity" {print $2}')
  [ -n "$ppl" ] || { echo "ppl_table: $label: no perplexity printed" >&2; exit 1; }
  printf '%s\t%s\t%s\t%s\n' "$label" "$ppl" "$seconds" "$command" >>"$out"
  echo "ppl_table: $label perplexity $ppl (compress ${seconds}s)"
done
