"""The review report's Jinja2 template (rendered with autoescape by ``medvit.evaluate.review``).

Kept as a module constant so the package needs no data files. Inline style only,
no scripts, no external resources: the page is self-contained.
"""

TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title>
<style>
body{font-family:sans-serif;margin:2em;max-width:80em}table{border-collapse:collapse;margin:.5em 0 1.5em}
td,th{border:1px solid #bbb;padding:3px 7px;text-align:left;vertical-align:top}th{background:#eee}
.na{color:#a33;font-style:italic}.warn{background:#fff3cd;border:1px solid #e0b400;padding:.5em}
tr.flagged td{background:#fde2e2}.unreliable{color:#a33;font-weight:bold}
img{max-width:100%;border:1px solid #ddd}figure{display:inline-block;margin:.5em;max-width:45em;vertical-align:top}
.gallery figure{max-width:16em}
</style></head><body>
{% macro na(text) %}<p class="na">{{ text }}</p>{% endmacro %}
{% macro table(columns, rows) %}<table><thead><tr>{% for c in columns %}<th>{{ c }}</th>{% endfor %}</tr></thead>
<tbody>{% for r in rows %}<tr>{% for c in r %}<td>{{ c }}</td>{% endfor %}</tr>
{% else %}<tr><td colspan="{{ columns|length }}">(no rows)</td></tr>{% endfor %}</tbody></table>{% endmacro %}
{% macro csv_table(t) %}{% if t.missing %}{{ na(t.missing) }}{% else %}{{ table(t.columns, t.rows) }}{% endif %}
{% endmacro %}
{% macro figure(f) %}{% if f.uri %}<figure><img src="{{ f.uri }}" alt="{{ f.caption }}"><figcaption>{{ f.caption }}
</figcaption></figure>{% else %}{{ na(f.caption ~ ': ' ~ f.missing) }}{% endif %}{% endmacro %}
<h1>{{ title }}</h1>
<p>Domain: {{ ctx.domain }}. Quality gate: {{ ctx.gate or "not recorded" }}</p>
{% if weights.random_init %}<p class="warn">NOT PRETRAINED: the backbone was randomly initialised (demo only);
this version cannot be approved.</p>{% endif %}

<h2 id="intended-use">Intended use and limitations</h2>
<p><b>Intended use.</b> {{ ctx.intended_use or "not available: set register.intended_use in params.yaml" }}</p>
<p><b>Limitations.</b> {{ ctx.limitations or "not available: set register.limitations in params.yaml" }}</p>

<h2 id="data">Data sources and de-identification</h2>
{% if data.missing %}{{ na(data.missing) }}{% else %}{{ table(["ingest", "value"], data.rows) }}{% endif %}
<h3>De-identification</h3>
{% if data.deid %}{{ table(["item", "value"], data.deid) }}
{% else %}{{ na(data.deid_missing or data.missing) }}{% endif %}

<h2 id="demographics">Demographics per split</h2>
{{ csv_table(demographics) }}
<h3>Label prevalence per split</h3>
{{ csv_table(prevalence) }}

<h2 id="metrics">Test metrics with confidence intervals</h2>
{% if intervals.known and not intervals.reliable %}<p class="warn unreliable">{{ intervals.note }}</p>
{% elif intervals.known %}<p>Intervals: {{ intervals.note }}</p>
{% else %}{{ na("interval reliability " ~ intervals.note) }}{% endif %}
{% if metrics.missing %}{{ na(metrics.missing) }}{% else %}
<table><thead><tr><th>metric</th><th>value</th><th>CI</th></tr></thead><tbody>
{% for r in metrics.rows %}<tr><td>{{ r[0] }}</td><td>{{ r[1] }}</td><td>{{ r[2] }}{% if r[2] and intervals.known and
not intervals.reliable %} <span class="unreliable">(unreliable)</span>{% endif %}</td></tr>{% endfor %}
</tbody></table>{% endif %}
<h3>Per label</h3>
{{ csv_table(per_label) }}
{% for f in curves %}{{ figure(f) }}{% endfor %}

<h2 id="subgroups">Subgroups</h2>
{% if subgroups.missing %}{{ na(subgroups.missing) }}{% else %}
<p>{{ subgroups.flags }} subgroup row(s) flagged (difference CI excludes 0, or AUROC below the gate).</p>
<table><thead><tr>{% for c in subgroups.columns %}<th>{{ c }}</th>{% endfor %}</tr></thead><tbody>
{% for r in subgroups.rows %}<tr{% if r.flagged %} class="flagged"{% endif %}>{% for c in r.cells %}
<td{% if r.unreliable and loop.index0 == 13 %} class="unreliable"{% endif %}>{{ c }}</td>{% endfor %}</tr>
{% else %}<tr><td colspan="{{ subgroups.columns|length }}">(no rows: no subgroup column in the manifest)</td></tr>
{% endfor %}</tbody></table>{% endif %}
{{ figure(forest) }}

<h2 id="calibration">Calibration</h2>
<p>Expected calibration error (test): {{ calibration.ece }}</p>
{{ figure(calibration.figure) }}

<h2 id="baselines">Baselines and paired differences</h2>
{% if baselines.missing %}{{ na(baselines.missing) }}{% else %}
<p>Differences are fine-tuned minus baseline on the same test images (paired group bootstrap).</p>
{% set mark = intervals.known and not intervals.reliable %}
<table><thead><tr><th>baseline</th><th>metric</th><th>baseline value</th><th>CI</th>
<th>fine-tuned minus baseline</th><th>difference CI</th></tr></thead><tbody>
{% for r in baselines.rows %}<tr>{% for c in r %}<td>{{ c }}{% if c and mark and loop.index0 in (3, 5) %}
 <span class="unreliable">(unreliable)</span>{% endif %}</td>{% endfor %}</tr>{% endfor %}</tbody></table>
{% endif %}

<h2 id="failures">Failure cases</h2>
{% if failures.missing %}{{ na(failures.missing) }}{% else %}
{% if failures.withheld %}<p class="warn">{{ failures.withheld }}</p>{% endif %}
{% if not failures.cases %}<p>No false positive or false negative at the chosen thresholds.</p>{% endif %}
<div class="gallery">{% for c in failures.cases %}<figure>{% if c.uri %}<img src="{{ c.uri }}"
alt="{{ c.label }} {{ c.kind }} {{ c.rank }}">{% endif %}<figcaption>{{ c.label }}: {{ c.kind }} #{{ c.rank }}<br>
id {{ c.id }} (group {{ c.group }}), score {{ c.score }} vs threshold {{ c.threshold }}{% if c.note %}<br>
<span class="na">{{ c.note }}</span>{% endif %}</figcaption></figure>{% endfor %}</div>{% endif %}

<h2 id="lineage">Lineage</h2>
<table><tbody>{% for k, v in ctx.lineage.items() %}<tr><th>{{ k }}</th><td>{{ v }}</td></tr>{% endfor %}
{% for k, v in ctx.run_links.items() %}<tr><th>{{ k }} run</th>
<td>{% if v.startswith("http") %}<a href="{{ v }}">{{ v }}</a>{% else %}{{ v }}{% endif %}</td></tr>{% endfor %}
</tbody></table>

<h2 id="weights">Weights provenance and licence</h2>
<table><tbody><tr><th>architecture</th><td>{{ weights.model }}</td></tr>
<tr><th>initial weights</th><td>{{ weights.reference }}</td></tr>
<tr><th>licence</th><td>{{ weights.licence }}</td></tr>
<tr><th>fine-tuned weights sha256</th><td>{{ weights.sha256 }}</td></tr></tbody></table>
<h3>Baselines' weights</h3>
{% if weights.baselines %}{{ table(["baseline", "weights", "licence"], weights.baselines) }}
{% else %}{{ na("not available: no evaluate run of this fine-tuned model in the tracking store") }}{% endif %}
</body></html>
"""
