# A/B slot choice of the firmware's initramfs (busybox sh), sourced by
# board/common/initramfs-init. The shell twin of BootEnv::boot in
# firmware/re6st-init/src/bootslot.rs (format and rules are described
# there); firmware/re6st-init/tests/bootslot_shell.rs checks that both agree.
#
# bootslot_choose ENVDEV TMPDIR: prints the slot to boot (a or b) and, when
# the choice changes the environment (a trial boot uses one try; a trial
# without tries left is recorded as failed), writes the new environment
# over the older of its two 4 KiB copies first.

bootenv_get() { # KEY FILE
  sed -n "s/^$1=//p" "$2" | head -n 1
}

# bootenv_valid FILE: the copy starts with the magic line and its sha256
# line matches the lines before it.
bootenv_valid() {
  [ "$(head -n 1 "$1")" = "re6st-bootenv 1" ] || return 1
  want=$(sed -n 's/^sha256=\([0-9a-f]*\)$/\1/p' "$1" | head -n 1)
  [ ${#want} = 64 ] || return 1
  have=$(sed '/^sha256=/,$d' "$1" | sha256sum | cut -d' ' -f1)
  [ "$have" = "$want" ] || return 1
  case $(bootenv_get active "$1") in a|b) ;; *) return 1 ;; esac
  case $(bootenv_get seq "$1") in ''|*[!0-9]*) return 1 ;; esac
  t=$(bootenv_get trial "$1")
  n=$(bootenv_get tries "$1")
  case "$t:$n" in
    :) ;;
    [ab]:[0-9]*) case $n in *[!0-9]*) return 1 ;; esac
                 [ "$t" != "$(bootenv_get active "$1")" ] || return 1 ;;
    *) return 1 ;;
  esac
  case $(bootenv_get failed "$1") in ''|a|b) ;; *) return 1 ;; esac
}

# bootenv_write DEV COPY SEQ ACTIVE TRIAL TRIES FAILED TMPDIR
bootenv_write() {
  body="re6st-bootenv 1
seq=$3
active=$4
"
  [ -z "$5" ] || body="${body}trial=$5
tries=$6
"
  [ -z "$7" ] || body="${body}failed=$7
"
  sum=$(printf '%s' "$body" | sha256sum | cut -d' ' -f1)
  printf '%ssha256=%s\n' "$body" "$sum" > "$8/new"
  size=$(wc -c < "$8/new")
  dd if=/dev/zero bs=$((4096 - size)) count=1 2>/dev/null >> "$8/new"
  dd if="$8/new" of="$1" bs=4096 seek="$2" count=1 conv=notrunc 2>/dev/null
  sync
}

bootslot_choose() {
  dev=$1 tmp=$2 best= bestseq=
  for i in 0 1; do
    dd if="$dev" bs=4096 skip=$i count=1 2>/dev/null | tr -d '\000' > "$tmp/env$i"
    if bootenv_valid "$tmp/env$i"; then
      s=$(bootenv_get seq "$tmp/env$i")
      if [ -z "$best" ] || [ "$s" -gt "$bestseq" ]; then best=$i bestseq=$s; fi
    fi
  done
  if [ -z "$best" ]; then
    echo a
    return
  fi
  f=$tmp/env$best
  active=$(bootenv_get active "$f")
  trial=$(bootenv_get trial "$f")
  tries=$(bootenv_get tries "$f")
  failed=$(bootenv_get failed "$f")
  other=$((1 - best))
  if [ -z "$trial" ]; then
    echo "$active"
  elif [ "$tries" -gt 0 ]; then
    bootenv_write "$dev" $other $((bestseq + 1)) "$active" "$trial" $((tries - 1)) "$failed" "$tmp"
    echo "$trial"
  else
    bootenv_write "$dev" $other $((bestseq + 1)) "$active" "" "" "$trial" "$tmp"
    echo "$active"
  fi
}
