#!/usr/bin/env bash
# The compression benchmark: for each method, `kick compress` on SmolLM2-135M-Instruct against its
# plain-PyTorch twin (tests/reference/compress_pipeline_twin.py) on the same calibration windows, one
# method after the other, and one Markdown table: wall time, peak RSS and the forward / statistics /
# solve split of each, the speed-up (twin / kick) and how far the twin's weights are from kick's.
#
#   tests/bench/compress_bench.sh [--nsamples 16] [--seqlen 512] [--seed 0] [--threads 2]
#       [--methods "magnitude wanda sparsegpt rtn gptq awq"] [--forward-batch 8] [--model HF_DIR]
#       [--kick PATH] [--work DIR] [--free] [--shared-stats] [--omp-wait passive|default] [--twin-glibc-default]
#       [--also-bf16] [--twin-no-save]
#
# Pruning runs at 0.5 unstructured; quantization at 4 bits, group 64 (SmolLM2's width 576 is not a
# multiple of 128, docs/footguns.md). kick's wall time and peak RSS come from /usr/bin/time -v (the
# whole process: load, tokenize, compress, save); its split from compression.json. The twin reports its
# own (process start to the end of its save, comparison with kick's file left out). Both write the
# compressed model (model.safetensors, fsynced, renamed): equal output means the same artifact on disk.
# --twin-no-save leaves the twin's save out, as the tables before 2026-11-25's fourth session were run.
# --free lets the twin run on its own weights all the way; by default it continues from kick's weights
# after comparing each layer (--follow-kick), so the agreement column measures each layer's solve rather
# than the drift that near-ties in early layers start (the timing is the same either way).
# Both processes run in the same environment: OMP_WAIT_POLICY=passive (--omp-wait default: unset) and
# the glibc mmap/trim thresholds kick sets for itself (kick::configure_allocator), given to the twin
# through glibc's MALLOC_*_ environment variables (--twin-glibc-default: leave the twin on glibc's
# defaults; the twin's big temporaries then page-fault in and out, 4-5x slower in AWQ's clip search).
# --also-bf16 runs kick a second time per calibrated method with --calibration-dtype bf16 (the twin stays
# fp32, as the references' statistics and solves) and adds a table: its time, its speed-up over the
# twin, and how far its weights and per-Linear output errors are from kick's fp32-calibrated run.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
nsamples=16 seqlen=512 seed=0 threads=2 forward_batch=8
methods="magnitude wanda sparsegpt rtn gptq awq"
model="" kick="${KICK:-$repo/build/apps/kick}" work="${TMPDIR:-/tmp}/kick-compress-bench"
follow=--follow-kick shared="" omp_wait=passive twin_glibc=kick also_bf16=0 twin_save=1

die() { echo "compress_bench.sh: $*" >&2; exit 2; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --nsamples) nsamples=$2; shift 2 ;;
    --seqlen) seqlen=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --methods) methods=$2; shift 2 ;;
    --forward-batch) forward_batch=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --kick) kick=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    --free) follow=""; shift ;;
    --shared-stats) shared=--shared-stats; shift ;;
    --omp-wait) omp_wait=$2; shift 2 ;;
    --twin-glibc-default) twin_glibc=default; shift ;;
    --also-bf16) also_bf16=1; shift ;;
    --twin-no-save) twin_save=0; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done
[[ -x "$kick" ]] || die "--kick $kick: not an executable (build it: cmake --build BUILD --target kick)"
[[ -x /usr/bin/time ]] || die "/usr/bin/time: missing (apt-get install time)"
[[ "$omp_wait" == passive || "$omp_wait" == default ]] || die "--omp-wait $omp_wait: expected passive or default"
for m in $methods; do
  case "$m" in magnitude|wanda|sparsegpt|rtn|gptq|awq) ;; *) die "--methods: unknown method $m" ;; esac
done
twin="$repo/tests/reference/compress_pipeline_twin.py"
mkdir -p "$work"
# Both sides get the same OpenMP wait policy: on a shared machine, spinning idle OpenMP threads of
# either process take the cores from the other work (see docs/performance.md).
if [[ "$omp_wait" == passive ]]; then export OMP_WAIT_POLICY=passive; else unset OMP_WAIT_POLICY; fi
twin_env=()
if [[ "$twin_glibc" == kick ]]; then
  twin_env=(MALLOC_MMAP_THRESHOLD_=$((1 << 30)) MALLOC_TRIM_THRESHOLD_=$((1 << 30)) MALLOC_TOP_PAD_=$((64 << 20)))
fi

if [[ -z "$model" ]]; then
  model="$work/smollm2-hf"
  [[ -f "$model/model.safetensors" ]] || "$kick" convert -m smollm2 -o "$model" --overwrite >&2
fi

method_args() {
  case "$1" in
    magnitude|wanda|sparsegpt) echo "--sparsity 0.5" ;;
    *) echo "--bits 4 --group-size 64" ;;
  esac
}

calibration="$work/calibration-n${nsamples}-l${seqlen}-s${seed}.safetensors"
for m in $methods; do
  echo "== $m: kick" >&2
  # shellcheck disable=SC2046
  /usr/bin/time -v -o "$work/$m.kick.time" "$kick" compress -m "$model" --method "$m" $(method_args "$m") \
    --nsamples "$nsamples" --seqlen "$seqlen" --seed "$seed" --forward-batch "$forward_batch" -t "$threads" \
    --save-calibration "$calibration" -o "$work/$m.kick" --overwrite >/dev/null 2>"$work/$m.kick.log" \
    || { cat "$work/$m.kick.log" >&2; die "kick compress --method $m failed"; }
  grep '^kick: ' "$work/$m.kick.log" >&2 || true
  if [[ $also_bf16 == 1 && $m != magnitude && $m != rtn ]]; then
    echo "== $m: kick, bf16 calibration forward" >&2
    # shellcheck disable=SC2046
    /usr/bin/time -v -o "$work/$m.kick-bf16.time" "$kick" compress -m "$model" --method "$m" $(method_args "$m") \
      --nsamples "$nsamples" --seqlen "$seqlen" --seed "$seed" --forward-batch "$forward_batch" -t "$threads" \
      --calibration-dtype bf16 -o "$work/$m.kick-bf16" --overwrite >/dev/null 2>"$work/$m.kick-bf16.log" \
      || { cat "$work/$m.kick-bf16.log" >&2; die "kick compress --method $m --calibration-dtype bf16 failed"; }
  fi
  echo "== $m: twin" >&2
  calib_arg=() save_arg=()
  case "$m" in magnitude|rtn) ;; *) calib_arg=(--calibration "$calibration") ;; esac
  if [[ $twin_save == 1 ]]; then
    rm -rf "$work/$m.twin-out"
    save_arg=(--save "$work/$m.twin-out")
  fi
  # shellcheck disable=SC2046
  env "${twin_env[@]}" /usr/bin/time -v -o "$work/$m.twin.time" /usr/bin/python3 "$twin" -m "$model" --method "$m" $(method_args "$m") \
    "${calib_arg[@]}" "${save_arg[@]}" --forward-batch "$forward_batch" --threads "$threads" $shared $follow \
    --kick-output "$work/$m.kick" --json "$work/$m.twin.json" >&2
done

# shellcheck disable=SC2086  # $methods is a list
/usr/bin/python3 - "$repo" "$work" "$nsamples" "$seqlen" "$seed" "$threads" "$forward_batch" "$omp_wait" "$twin_glibc" "${follow:-free}" "${shared:-per-linear}" "$twin_save" $methods <<'EOF'
import json, os, re, statistics, sys
repo, work, nsamples, seqlen, seed, threads, batch, omp_wait, twin_glibc, follow, shared, twin_save, *methods = sys.argv[1:]
follow, shared = follow != "free", shared != "per-linear"

def gnu_time(path):
    text = open(path).read()
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", text).group(1)
    seconds = 0.0
    for part in wall.split(":"):
        seconds = seconds * 60 + float(part)
    cpu = float(re.search(r"User time \(seconds\): (\S+)", text).group(1)) + \
          float(re.search(r"System time \(seconds\): (\S+)", text).group(1))
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1)) / 1024
    return seconds, cpu, rss

def split(s):
    return f"{s['forward']:.1f} / {s['statistics']:.1f} / {s['solve']:.1f}"

print(f"Calibration {nsamples} x {seqlen} tokens (alpaca_5000.json, seed {seed}), {threads} threads each, "
      f"forward batch {batch}, OMP_WAIT_POLICY={omp_wait}, twin on {'kick' if twin_glibc == 'kick' else 'default'}'s "
      f"glibc malloc thresholds; twin statistics "
      f"{'shared per input group (as kick)' if shared else 'per Linear (as the references)'}; agreement "
      f"{'per layer, the twin continuing from kick weights after each layer' if follow else 'of the free-running twin'}; "
      f"{'both save the compressed model' if twin_save == '1' else 'kick saves the compressed model, the twin does not'}.")
print("Split = forward / statistics / solve seconds. Speed-up = twin / kick: process wall (compression only; cpu).\n")
print("| method | kick wall s (cpu s) | kick peak RSS MiB | kick split s | twin wall s (cpu s) | twin peak RSS MiB "
      "| twin split s | speed-up (twin/kick) | output agreement |")
print("|---|---|---|---|---|---|---|---|---|")
for m in methods:
    kwall, kcpu, krss = gnu_time(f"{work}/{m}.kick.time")
    kseconds = json.load(open(f"{work}/{m}.kick/compression.json"))["stages"][-1]["report"]["seconds"]
    twin = json.load(open(f"{work}/{m}.twin.json"))
    tseconds = twin["seconds"]
    a = twin["agreement"]
    agree = f"max abs {a['max_abs_diff']:.2g}, rel. Frobenius {a['rel_fro_diff']:.2g}"
    if a["mask_disagreements"] is not None:
        agree += f", masks differ at {a['mask_disagreements']} of {a['entries']}"
    else:
        agree += f", {a['unequal_entries']} of {a['entries']} values differ"
    print(f"| {m} | {kwall:.1f} ({kcpu:.1f}) | {krss:.0f} | {split(kseconds)} | {twin['wall_seconds']:.1f} "
          f"({twin['cpu_seconds']:.1f}) | {twin['peak_rss_mib']:.0f} | {split(tseconds)} | "
          f"{twin['wall_seconds'] / kwall:.2f}x ({tseconds['total'] / kseconds['total']:.2f}x; "
          f"{twin['cpu_seconds'] / kcpu:.2f}x) | {agree} |")

bf16_methods = [m for m in methods if os.path.exists(f"{work}/{m}.kick-bf16.time")]
if bf16_methods:
    sys.path.insert(0, f"{repo}/tests/reference")
    import torch
    from compress_pipeline_twin import SafeTensors
    print("\nkick with `--calibration-dtype bf16` (forward passes in bf16; statistics and solves fp32), against the "
          "same twin and against kick's fp32-calibrated weights above.\n")
    print("| method | kick bf16 wall s (cpu s) | peak RSS MiB | split s | speed-up over twin (compression only) "
          "| weights vs fp32-calibrated kick | output error, bf16 / fp32 calibration (median, max per Linear) |")
    print("|---|---|---|---|---|---|---|")
    for m in bf16_methods:
        wall, cpu, rss = gnu_time(f"{work}/{m}.kick-bf16.time")
        meta = json.load(open(f"{work}/{m}.kick-bf16/compression.json"))
        seconds = meta["stages"][-1]["report"]["seconds"]
        twin = json.load(open(f"{work}/{m}.twin.json"))
        a, b = SafeTensors(f"{work}/{m}.kick/model.safetensors"), SafeTensors(f"{work}/{m}.kick-bf16/model.safetensors")
        entries = differ = 0
        num = den = 0.0
        for name in a.names():
            if not name.endswith("proj.weight"):
                continue
            x, y = a.get(name).float(), b.get(name).float()
            entries += x.numel()
            differ += int(((x == 0) != (y == 0)).sum()) if m in ("wanda", "sparsegpt") else int((x != y).sum())
            num += float((x - y).pow(2).sum()); den += float(x.pow(2).sum())
        what = "masks differ at" if m in ("wanda", "sparsegpt") else "values differ:"
        ratios = []
        fp32_layers = json.load(open(f"{work}/{m}.kick/compression.json"))["stages"][-1]["report"]["layers"]
        for la, lb in zip(fp32_layers, meta["stages"][-1]["report"]["layers"]):
            for name, stats in la["linears"].items():
                ratios.append(lb["linears"][name]["output_error_sample"] / max(stats["output_error_sample"], 1e-30))
        print(f"| {m} | {wall:.1f} ({cpu:.1f}) | {rss:.0f} | {split(seconds)} | {twin['wall_seconds'] / wall:.2f}x "
              f"({twin['seconds']['total'] / seconds['total']:.2f}x) | rel. Frobenius {(num / den) ** 0.5:.2g}, {what} "
              f"{differ} of {entries} | {statistics.median(ratios):.4f}, {max(ratios):.4f} |")
EOF
