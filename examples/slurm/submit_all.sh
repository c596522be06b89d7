#!/bin/bash
# Preprocess (array + dependent merge), then track (array + merge), chained by dependencies.
# Usage: IN=/data/export CACHE=/scratch/cache OUT=/scratch/tracking ./submit_all.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p logs
export IN CACHE OUT
pre=$(sbatch --parsable --export=ALL "$here/preprocess_array.sbatch")
merge=$(sbatch --parsable --export=ALL --dependency=afterok:"$pre" "$here/preprocess_merge.sbatch")
track=$(sbatch --parsable --export=ALL --dependency=afterok:"$merge" "$here/track_array.sbatch")
sbatch --parsable --export=ALL --dependency=afterok:"$track" "$here/track_merge.sbatch"
echo "submitted: preprocess $pre, merge $merge, track $track"
