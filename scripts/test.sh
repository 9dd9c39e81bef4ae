#!/bin/sh
# The whole test suite: a normal build with `make check`, then the same
# suite under AddressSanitizer + UndefinedBehaviorSanitizer in build-asan/.
# Exits non-zero if any test fails. Set IKADA_SKIP_ASAN=1 to skip the
# second pass.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
jobs=$(nproc)

show_failures() {
    # Print the logs of failed tests so CI output explains itself.
    for f in $(grep -l '^:test-result: \(FAIL\|ERROR\)' $(find "$1" -name '*.trs') 2>/dev/null); do
        echo "==== ${f%.trs}.log"
        tail -n 80 "${f%.trs}.log"
    done
}

"$top/scripts/build.sh"
if ! make -j"$jobs" check; then
    show_failures "$top"
    exit 1
fi

if [ "${IKADA_SKIP_ASAN:-0}" != 1 ]; then
    # automake allows one in-tree configuration per source tree, so the
    # sanitizer build gets its own copy of the sources.
    asan="$top/build-asan"
    rm -rf "$asan"
    mkdir -p "$asan"
    git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$asan"
    "$asan/scripts/build.sh" --enable-sanitize --enable-debug
    cd "$asan"
    if ! ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
         UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
         make -j"$jobs" check; then
        show_failures "$asan"
        exit 1
    fi
fi
echo "test.sh: all tests passed"
