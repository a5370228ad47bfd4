#!/usr/bin/env bash
# Layer rules of src/README.md: every #include "…" in src/ and quant/ names a header of its own
# layer or of one the README's `layers` block allows; core/ and quant/ include no public header
# but lorakit/core.h and lorakit/quant.h; tools/ and samples/ include only public headers (tools
# also cli.h). Prints every violation; exit 1 if any.
set -euo pipefail
root=${1:-$(cd "$(dirname "$0")/.." && pwd)}
declare -A allow
while read -r name rest; do
    allow[${name%:}]=" $rest "
done < <(awk '/^```layers$/{f=1;next} /^```$/{f=0} f' "$root/src/README.md")
[ ${#allow[@]} -gt 0 ] || { echo "check_layers: no layers block in src/README.md" >&2; exit 1; }
bad=0
report() { echo "$1:$2: includes \"$3\": $4" >&2; bad=1; }
check_file() { # file layer
    local f=$1 layer=$2 n=0 line inc target
    while IFS= read -r line; do
        n=$((n + 1))
        [[ $line =~ ^[[:space:]]*#[[:space:]]*include[[:space:]]*\"([^\"]+)\" ]] || continue
        inc=${BASH_REMATCH[1]}
        case $inc in
        lorakit/core.h | lorakit/quant.h) continue ;;
        lorakit/*)
            [[ $layer == core || $layer == quant ]] &&
                report "$f" $n "$inc" "the $layer layer includes no public header but core.h and quant.h"
            continue ;;
        */*) target=${inc%%/*} ;;
        *) if [ -e "$root/quant/$inc" ]; then target=quant; else target=$layer; fi ;;
        esac
        if [ -z "${allow[$target]+x}" ]; then
            report "$f" $n "$inc" "no layer '$target'"
        elif [[ ${allow[$layer]} != *" $target "* ]]; then
            report "$f" $n "$inc" "layer $layer may not include layer $target (src/README.md)"
        elif [[ $target == "$layer" && $inc == */* && ! -e "$root/src/$inc" ]]; then
            report "$f" $n "$inc" "no such header"
        fi
    done < "$f"
}
for f in "$root"/src/*/*.[ch]; do
    layer=$(basename "$(dirname "$f")")
    [ -n "${allow[$layer]+x}" ] || { echo "$f: folder $layer is not a layer of src/README.md" >&2; bad=1; continue; }
    check_file "$f" "$layer"
done
for f in "$root"/quant/*.[ch]; do check_file "$f" quant; done
for f in "$root"/tools/*.[ch] "$root"/samples/*.c; do
    [ -e "$f" ] || continue
    while IFS=: read -r n inc; do
        report "$f" "$n" "$inc" "tools and samples include only public headers (and tools cli.h)"
    done < <(grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$f" |
             sed -E 's/^([0-9]+):.*"([^"]+)".*/\1:\2/' | grep -v -E ':(lorakit/.*|cli\.h)$' || true)
done
[ $bad = 0 ] && echo "check_layers: every include follows src/README.md"
exit $bad
