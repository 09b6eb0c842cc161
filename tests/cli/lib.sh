# Shared by the command-line tests (sourced): a fresh work folder and a
# `check NAME COMMAND...` that prints ok/FAIL and counts failures.
# usage: source lib.sh WORK_DIR
work="$1"
rm -rf "$work"
mkdir -p "$work"
failures=0
check() {  # check NAME CONDITION-COMMAND...
  local name="$1"; shift
  if "$@"; then echo "ok   $name"; else echo "FAIL $name"; failures=$((failures + 1)); fi
}
