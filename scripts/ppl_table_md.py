#!/usr/bin/env python3
"""Rewrites the perplexity table of docs/results.md from results/ppl_table.tsv (made by scripts/ppl_table.sh),
rows in the script's order, and the line that lists the rows still missing. Run from the repository root:
    python3 scripts/ppl_table_md.py"""
import re
rows = {}
for line in open('results/ppl_table.tsv'):
    f = line.rstrip('\n').split('\t')
    if f[0] == 'setting' or len(f) < 4: continue
    rows.setdefault(f[0], f)
order = ['dense']
for m in ['magnitude', 'wanda', 'sparsegpt']:
    order += [f'{m} {s}' for s in ['0.1','0.2','0.3','0.4','0.5','0.6','0.7','2:4','4:8']]
for m in ['rtn', 'gptq', 'awq']:
    order += [f'{m} w{b}g64' for b in [8, 4, 3]]
lines = ['| setting | perplexity | compress wall s | `kick compress -m smollm2` arguments |', '|---|---:|---:|---|']
missing = []
for k in order:
    if k not in rows: missing.append(k); continue
    f = rows[k]
    m = re.search(r'kick compress -m smollm2 (.*?) -o DIR', f[3])
    args = m.group(1).strip() if m else '(none: the fetched model)'
    lines.append(f'| {k} | {float(f[1]):.2f} | {f[2]} | `{args}` |')
p = 'docs/results.md'
s = open(p).read()
start = s.index('| setting | perplexity | compress wall s |')
end = s.index('\n\n', start)
s = s[:start] + '\n'.join(lines) + s[end:]
old_tail_start = s.index('Rows not listed') if 'Rows not listed' in s else s.index('All rows of the grid are measured.')
old_tail_end = s.index('\n\n', old_tail_start) if '\n\n' in s[old_tail_start:] else len(s)
tail = ('Rows not listed (' + ', '.join(missing) + ') were still running when this page was last written; '
        '`bash scripts/ppl_table.sh` resumes and adds them.') if missing else 'All rows of the grid are measured.'
s = s[:old_tail_start] + tail + s[old_tail_end:]
open(p, 'w').write(s)
print(len(lines) - 2, 'rows;', 'missing:', missing)
