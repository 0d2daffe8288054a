#!/usr/bin/env bash
# fig-switch, shortened (runs of 4 s switched at 2 s), with the NetKernel
# guests as QEMU VMs (--guests vm): the same checks as test_fig_switch_short
# (stream intact, no restart, both switches, every summary field, figure).
# timeout: 420
set -euo pipefail
. "$(dirname "$0")/../../scenarios/lib/testbed.sh"
tb_vm_require
NK_FIG_GUESTS=vm exec bash "$(dirname "$0")/test_fig_switch_short.sh"
