#!/usr/bin/env bash
# The whole medseq pipeline on the bundled sample data, end to end:
#   preprocess -> track -> train -> evaluate -> predict (one patient) -> report
# Usage: scripts/demo.sh [DATA_DIR] [OUT_DIR]     (defaults: sample_data medseq-demo)
# Environment: MEDSEQ (the command, default "medseq"), DEMO_EPOCHS (default 8),
# DEMO_FOLDS (default 3). Rerunning reuses what is already done.
set -euo pipefail

DATA="${1:-sample_data}"
OUT="${2:-medseq-demo}"
MEDSEQ="${MEDSEQ:-medseq}"
EPOCHS="${DEMO_EPOCHS:-8}"
FOLDS="${DEMO_FOLDS:-3}"
RUN="$OUT/runs/demo"
say() { printf '\n== %s\n' "$*" >&2; }

if [ ! -f "$DATA/manifest.csv" ]; then
    echo "error: $DATA/manifest.csv not found (run from the repository root, or give DATA_DIR)" >&2
    exit 2
fi
mkdir -p "$OUT"

say "1/6 preprocess $DATA -> $OUT/cache"
$MEDSEQ preprocess "$DATA/manifest.csv" -o "$OUT/cache" --workers 2

say "2/6 track lesions and RECIST 1.1 -> $OUT/tracking"
$MEDSEQ track "$OUT/cache" -o "$OUT/tracking"

say "3/6 train ($FOLDS-fold cross-validation, $EPOCHS epochs) -> $RUN"
if [ -f "$RUN/predictions.jsonl" ] && [ -f "$RUN/model.json" ]; then
    echo "already trained: $RUN" >&2
elif [ -f "$RUN/config.yaml" ]; then
    $MEDSEQ train "$OUT/cache" -o "$RUN" --resume
else
    $MEDSEQ train "$OUT/cache" -o "$RUN" --folds "$FOLDS" --epochs "$EPOCHS" --seed 0
fi

say "4/6 evaluate against the size-only baseline -> $RUN/evaluation.json"
$MEDSEQ evaluate "$RUN"

say "5/6 predict one patient of the cohort -> $OUT/prediction.json"
# A one-patient manifest (absolute paths) for the first patient of the sample data that the
# run trained on (early prediction leaves out patients whose first scans already decide the
# label); the run's pseudonym key maps the sample data's ids to the run's.
python3 - "$DATA/manifest.csv" "$OUT/one_patient.csv" "$RUN" <<'PY'
import csv, hashlib, hmac, json, os, sys
src, dst, run = sys.argv[1], sys.argv[2], sys.argv[3]
base = os.path.dirname(os.path.abspath(src))
with open(src, newline="", encoding="utf-8-sig") as f:
    rows = list(csv.DictReader(f))
with open(os.path.join(run, "salt.key"), encoding="ascii") as f:
    key = bytes.fromhex(f.read().strip())
with open(os.path.join(run, "splits.json"), encoding="utf-8") as f:
    trained = json.load(f)["labels"]
def pseudonym(pid):
    return "P" + hmac.new(key, pid.encode("utf-8"), hashlib.sha256).hexdigest()[:10]
ids = list(dict.fromkeys(row["patient_id"] for row in rows))
first = next((pid for pid in ids if pseudonym(pid) in trained), ids[0])
with open(dst, "w", newline="", encoding="utf-8") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    for row in rows:
        if row["patient_id"] == first:
            for key in ("image", "mask"):
                if row.get(key):
                    row[key] = os.path.join(base, row[key])
            writer.writerow(row)
PY
$MEDSEQ predict "$OUT/one_patient.csv" --model "$RUN" --json > "$OUT/prediction.json"
python3 - "$OUT/prediction.json" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1], encoding="utf-8"))
pred = doc["prediction"]
print(f"patient {doc['patient_id']}: {pred['class']} "
      f"(probability {pred['probability']:.3f}, {doc['model']['used']})")
PY

say "6/6 report -> $OUT/report.html"
$MEDSEQ report "$RUN" -o "$OUT/report.html" > /dev/null

echo
echo "Report: $OUT/report.html"
