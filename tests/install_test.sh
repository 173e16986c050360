#!/usr/bin/env bash
# Install works: configure the source tree with -Ddefault_library=both and a temporary prefix,
# `meson install`, then with no LD_LIBRARY_PATH
#   - run the installed nnderiv (its run path finds the installed library) and save model.json;
#   - find nnderiv.pc there with pkg-config, compile the README's C example with
#     -Wall -Wextra -Werror against it and run it;
#   - link the same example against the installed static library and run it without the .so.
#   install_test.sh SOURCE_DIR MESON
set -euo pipefail
src=$1
meson=$2
tmp=$(mktemp -d "${TMPDIR:-/tmp}/nnderiv-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
unset LD_LIBRARY_PATH
prefix=$tmp/prefix
fail() { echo "install test: $*" >&2; exit 1; }

"$meson" setup "$tmp/build" "$src" --prefix="$prefix" -Ddefault_library=both -Dtests=false \
    -Dbuildtype=release >"$tmp/setup.log" 2>&1 || { cat "$tmp/setup.log"; fail "meson setup failed"; }
"$meson" install -C "$tmp/build" >"$tmp/install.log" 2>&1 || { tail -30 "$tmp/install.log"; fail "meson install failed"; }

nnderiv=$prefix/bin/nnderiv
[ -x "$nnderiv" ] || fail "no $nnderiv"
(cd "$tmp" && "$nnderiv" demo --save model.json) || fail "the installed nnderiv does not run"
[ -s "$tmp/model.json" ] || fail "nnderiv demo --save wrote nothing"
"$nnderiv" --version

pc=$(find "$prefix" -name nnderiv.pc | head -1)
[ -n "$pc" ] || fail "no nnderiv.pc under $prefix"
export PKG_CONFIG_PATH=$(dirname "$pc")
libdir=$(pkg-config --variable=libdir nnderiv) || fail "pkg-config does not find nnderiv.pc in $PKG_CONFIG_PATH"
[ -f "$libdir/libnnderiv.a" ] || fail "-Ddefault_library=both installed no $libdir/libnnderiv.a"
case "$(readelf -d "$nnderiv")" in
    *"$libdir"*) ;;
    *) fail "$nnderiv has no run path to $libdir" ;;
esac

# The README's first C block (under "Using the library"), as users copy it.
awk '/^## Using the library/ { f = 1 } f && /^```c/ { p = 1; next } p && /^```/ { exit } p' \
    "$src/README.md" >"$tmp/example.c"
[ -s "$tmp/example.c" ] || fail "no C example in README.md"
cc=${CC:-cc}
# shellcheck disable=SC2046  # pkg-config prints a list of flags
"$cc" -Wall -Wextra -Werror "$tmp/example.c" $(pkg-config --cflags --libs nnderiv) \
    -Wl,-rpath,"$libdir" -o "$tmp/example" || fail "the README's example does not compile cleanly"
out=$(cd "$tmp" && ./example) || fail "the README's example failed"
echo "shared: $out"
case "$out" in "y0 = "*) ;; *) fail "unexpected output from the example: $out" ;; esac

# shellcheck disable=SC2046
"$cc" -Wall -Wextra -Werror "$tmp/example.c" $(pkg-config --cflags nnderiv) "$libdir/libnnderiv.a" \
    $(pkg-config --static --libs nnderiv | sed 's/-lnnderiv\b//') -o "$tmp/example_static" \
    || fail "the README's example does not link against libnnderiv.a"
if ldd "$tmp/example_static" | grep -q libnnderiv; then fail "the static example still loads libnnderiv.so"; fi
out_static=$(cd "$tmp" && ./example_static) || fail "the statically linked example failed"
echo "static: $out_static"
[ "$out" = "$out_static" ] || fail "static and shared builds differ: '$out' vs '$out_static'"
echo "install test: ok"
