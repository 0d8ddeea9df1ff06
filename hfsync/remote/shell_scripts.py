"""The POSIX sh sources of the python3-less remote side (docs/architecture.md, "SSH hosts").

Why shell at all: some images (distroless bases, busybox-plus-coreutils boxes) have no python3,
and the issue promises a push needs only a POSIX shell and coreutils there. The scripts mirror
agent.py's rules one for one (lock file and holder line, part names, verify before rename,
metadata format, "no `..`, no symlink escape") so a folder written either way is the same.

Two programs, both using only sh builtins plus GNU coreutils (stat, head, sha256sum, sha1sum,
readlink, mkdir, mv, rm, rmdir, truncate, cat, date) and find; flock (util-linux) when present:

* ``PRELUDE`` + requests: the control session is ``sh -s`` reading *commands* from the
  channel (remote/shell_host.py): the prelude defines the functions, then each request is one
  snippet ending in an end record, so a run costs one remote process however many requests it
  makes, and the process holds the lock's fd until its stdin closes (a dead laptop frees it).
  Replies are NUL-terminated fields (``printf '%s\\0'``): a file name may hold a newline, never
  a NUL, so nothing a remote folder contains can shift the framing.
* ``RECV``: ``sh -c RECV hfsync-recv ROOT`` reads frames (three header lines, then the bytes)
  from stdin: ``read`` takes the header a byte at a time (POSIX requires it not to read past
  the newline), ``head -c N`` takes exactly N bytes (it never asks for more than it needs), so
  header and data can share one stream as they do for the agent. Replies are lines (sequence
  numbers, not paths, so nothing needs escaping).
"""

from __future__ import annotations

# Functions shared by both programs. Variables: R (REMOTE_DIR, absolute), S (its state folder),
# D (S/download), RR and SR (their realpaths), MT (stat's mtime format), NL (a newline).
COMMON = r"""
NL='
'
hf_root() {
  R=$1
  case $R in /*) ;; *) R=$PWD/$R ;; esac
  while :; do case $R in ?*/) R=${R%/} ;; *) break ;; esac; done
  S=$R/.cache/huggingface
  D=$S/download
  RR=$R
  SR=$S
}
hf_real() {
  realpath -m -- "$1" 2>/dev/null || readlink -f -- "$1" 2>/dev/null || printf '%s' "$1"
}
hf_try() { hf_e=$("$@" 2>&1); }
hf_first() { hf_e=${1%%"$NL"*}; }
hf_okd=
hf_inside() {  # BASE PATH: the nearest existing folder of PATH resolves inside BASE
  hf_d=${2%/*}
  while [ ! -e "$hf_d" ] && [ ! -L "$hf_d" ]; do
    case $hf_d in */*) hf_d=${hf_d%/*} ;; *) break ;; esac
  done
  [ -n "$hf_d" ] || hf_d=/
  if [ -z "$hf_fresh" ]; then  # folders already seen inside
    case $hf_okd in *"$NL$1|$hf_d$NL"*) return 0 ;; esac
  fi
  hf_r=$(readlink -f -- "$hf_d") || return 1
  case $hf_r in
    "$1"|"$1"/*) [ ${#hf_okd} -lt 65536 ] || hf_okd=; hf_okd="$hf_okd$NL$1|$hf_d$NL"; return 0 ;;
  esac
  return 1
}
hf_fresh=
hf_inside_now() { hf_fresh=1; hf_inside "$@"; hf_in=$?; hf_fresh=; return $hf_in; }  # uncached
hf_safe() {  # a repo-style relative path: no empty, '.' or '..' segment, not absolute
  case $1 in ''|/*) return 1 ;; esac
  case /$1/ in *//*|*/./*|*/../*) return 1 ;; esac
  return 0
}
hf_ts() {
  hf_t=$(date +%s.%N 2>/dev/null)
  case $hf_t in ''|*[!0-9.]*|.*|*.) hf_t=$(date +%s) ;; esac
}
hf_init() {  # create R/.cache/huggingface as a local folder has it; 1 + hf_k/hf_e on refusal
  hf_k=disk
  hf_try mkdir -p -- "$R" || { hf_first "$hf_e"; return 1; }
  RR=$(hf_real "$R")
  if ! hf_inside "$RR" "$S/x"; then
    hf_e="refusing $S: it resolves outside $R (symlink)"; return 1
  fi
  hf_try mkdir -p -- "$D" || { hf_first "$hf_e"; return 1; }
  SR=$(hf_real "$S")
  [ -e "$S/.gitignore" ] || [ -L "$S/.gitignore" ] || printf '*' > "$S/.gitignore"
  [ -e "$S/CACHEDIR.TAG" ] || [ -L "$S/CACHEDIR.TAG" ] || printf '%s\n' \
    'Signature: 8a477f597d28d172789f06886806bc55' \
    '# This file is a cache directory tag created by hfsync.' \
    '# For information about cache directory tags, see: https://bford.info/cachedir/' \
    > "$S/CACHEDIR.TAG"
  return 0
}
hf_write_meta() {  # REL COMMIT ETAG, timestamp hf_t: temp + rename, the --local-dir format
  hf_k=disk
  hf_m=$D/$1.metadata
  if ! hf_inside "$RR" "$hf_m" || ! hf_inside "$SR" "$hf_m"; then
    hf_e="refusing to write $hf_m: its folder resolves outside $R"; return 1
  fi
  hf_md=${hf_m%/*}
  [ -d "$hf_md" ] || hf_try mkdir -p -- "$hf_md" || { hf_first "$hf_e"; return 1; }
  hf_e=$( { printf '%s\n%s\n%s\n' "$2" "$3" "$hf_t" > "$hf_m.$$.tmp"; } 2>&1 ) \
    || { hf_first "$hf_e"; rm -f -- "$hf_m.$$.tmp"; return 1; }
  hf_try mv -f -- "$hf_m.$$.tmp" "$hf_m" || { hf_first "$hf_e"; return 1; }
}
hf_checked() {  # REL -> hf_f (R/REL); 1 + hf_k=path/hf_e when unsafe
  hf_k=path
  if ! hf_safe "$1"; then hf_e="refusing unsafe path '$1'"; return 1; fi
  hf_f=$R/$1
  if ! hf_inside "$RR" "$hf_f"; then
    hf_e="refusing to write $hf_f: its folder resolves outside $R"; return 1
  fi
}
MT=%Y
case $(stat -c %.9Y / 2>/dev/null) in *[0-9].[0-9]*) MT=%.9Y ;; esac
hf_missing=
for hf_t in stat head cat mkdir mv rm rmdir readlink truncate date sha256sum sha1sum sync; do
  command -v "$hf_t" >/dev/null 2>&1 || hf_missing="$hf_missing $hf_t"
done
hf_flock=
command -v flock >/dev/null 2>&1 && hf_flock=1
"""

# The control session's functions. Records: `printf '%s\0'` per field, a tag first.
PRELUDE = (
    COMMON
    + r"""
hf_rec() { printf '%s\0' "$@"; }
hf_hello() {  # WAIT HOLDER: take the lock (WAIT < 0: a dry run, create nothing)
  if [ -n "$hf_missing" ]; then hf_rec E usage "it lacks$hf_missing"; return; fi
  if [ "$1" -lt 0 ]; then hf_rec H 0 "$$" "$(hf_real "$R")"; return; fi
  hf_init || { hf_rec E "$hf_k" "$hf_e"; return; }
  L=$S/hfsync.lock
  if [ -L "$L" ]; then hf_rec E disk "refusing $L: it is a symbolic link"; return; fi
  if [ -n "$hf_flock" ]; then
    # The file and flock a local `hfsync sync` and the python agent take: mutual exclusion
    # with either; the kernel drops the lock when this shell exits.
    exec 9>>"$L" || { hf_rec E disk "cannot open $L"; return; }
    if [ "$1" -gt 0 ]; then flock -w "$1" 9; else flock -n 9; fi || { hf_busy "$L"; return; }
    printf '%s %s\n' "$$" "$2" > "$L"
    hf_rec H 1 "$$" "$RR"
    return
  fi
  # No flock: an atomic mkdir holding the pid, removed when this shell ends; a folder whose
  # pid is gone is stale (its shell was killed before its trap could run).
  LD=$S/hfsync.lock.d
  hf_n=0
  while ! mkdir -- "$LD" 2>/dev/null; do
    hf_p=
    [ -f "$LD/holder" ] && read -r hf_p hf_rest < "$LD/holder"
    if [ -n "$hf_p" ] && ! kill -0 "$hf_p" 2>/dev/null && [ "$hf_n" -lt 100 ]; then
      rm -rf -- "$LD"; hf_n=$((hf_n + 1)); continue
    fi
    if [ "$hf_n" -ge "$1" ]; then hf_busy "$LD/holder"; return; fi
    hf_n=$((hf_n + 1)); sleep 1
  done
  trap 'rm -rf -- "$LD"' EXIT
  trap 'exit 1' HUP INT TERM PIPE
  printf '%s %s\n' "$$" "$2" > "$LD/holder"
  hf_rec H 1 "$$" "$RR"
}
hf_busy() { hf_b=; [ -f "$1" ] && IFS= read -r hf_b < "$1"; hf_rec B "$hf_b"; }
hf_stat() { stat -L --printf "S\0%n\0%s\0$MT\0" -- "$@" 2>/dev/null; }
hf_scan() {  # ALL; stdin: the listed paths, one a line. Sizes, mtimes, metadata, part files.
  if [ ! -d "$R" ]; then hf_rec X 0 "$(hf_real "$R")"; return 0; fi
  hf_rec X 1 "$(hf_real "$R")"
  cd -- "$R" || return 0
  hf_all=$1
  set --
  while IFS= read -r hf_p; do
    if [ -f ".cache/huggingface/download/$hf_p.metadata" ]; then
      hf_a=; hf_b=; hf_c=
      { IFS= read -r hf_a; IFS= read -r hf_b; IFS= read -r hf_c; } \
        < ".cache/huggingface/download/$hf_p.metadata" 2>/dev/null
      hf_rec M "$hf_p" "$hf_a$NL$hf_b$NL$hf_c$NL"
    fi
    if [ "$hf_all" = 0 ] && [ -f "./$hf_p" ]; then
      set -- "$@" "./$hf_p"
      if [ $# -ge 200 ]; then hf_stat "$@"; set --; fi
    fi
  done
  [ $# -gt 0 ] && hf_stat "$@"
  if [ "$hf_all" = 1 ]; then
    find . -path ./.cache/huggingface -prune -o -type f \
      -exec stat -L --printf "S\0%n\0%s\0$MT\0" -- {} + 2>/dev/null
  fi
  if [ -d .cache/huggingface/download ]; then
    ( cd .cache/huggingface/download && find . -type f -name '*.hfsync-part' \
      -exec stat --printf 'P\0%n\0%s\0' -- {} + 2>/dev/null )
  fi
  return 0
}
hf_hash() {  # stdin: "sha256 SIZE" or "sha1 SIZE", then the path; one D record each
  cd -- "$R" || return 0
  while IFS=' ' read -r hf_k hf_n && IFS= read -r hf_p; do
    case $hf_k in
      sha256) hf_o=$(sha256sum < "./$hf_p" 2>/dev/null) || continue ;;
      *) [ -r "./$hf_p" ] || continue
         hf_o=$( { printf 'blob %s\0' "$hf_n"; cat -- "./$hf_p"; } 2>/dev/null | sha1sum) ;;
    esac
    hf_rec D "$hf_p" "${hf_o%% *}"
  done
}
hf_record() {  # stdin: commit, etag, path lines per file
  hf_init || { hf_rec E "$hf_k" "$hf_e"; return; }
  hf_ts
  while IFS= read -r hf_c && IFS= read -r hf_g && IFS= read -r hf_p; do
    hf_checked "$hf_p" || { hf_rec E "$hf_k" "$hf_e"; return; }
    hf_write_meta "$hf_p" "$hf_c" "$hf_g" || { hf_rec E "$hf_k" "$hf_e"; return; }
  done
  hf_rec K
}
hf_prune() {  # FOLDER STOP: remove empty folders up to STOP
  hf_d=$1
  while [ "$hf_d" != "$2" ]; do
    case $hf_d in "$2"/*) ;; *) return 0 ;; esac
    rmdir -- "$hf_d" 2>/dev/null || return 0
    hf_d=${hf_d%/*}
  done
}
hf_delete() {  # stdin: one path a line
  RR=$(hf_real "$R")
  while IFS= read -r hf_p; do
    hf_checked "$hf_p" || { hf_rec E "$hf_k" "$hf_e"; return; }
    if ! hf_try rm -f -- "$hf_f" "$D/$hf_p.metadata"; then
      hf_first "$hf_e"; hf_rec E disk "$hf_e"; return
    fi
    case $hf_p in
      */*) hf_prune "$R/${hf_p%/*}" "$R"; hf_prune "$D/${hf_p%/*}" "$D" ;;
    esac
  done
  hf_rec K
}
"""
)

# The receiving loop: `sh -c RECV hfsync-recv ROOT`. Frame: "SEQ SIZE OFFSET ETAG COMMIT",
# the path, the part name (relative to D), then SIZE - offset bytes. Replies, one line each:
# "A SEQ N" (the part stands at N; asked with OFFSET -1), "K SEQ N" (landed, N bytes written),
# "H SEQ" (already in place), "X SEQ KIND FATAL MESSAGE" (FATAL 1: the stream stops).
# hf_durable: coreutils >= 8.24 and busybox `sync FILE` fsync that file and say when it failed;
# an older sync takes no operands and syncs everything, as durable but mute. Which one the host
# has is asked once, on the state folder, so that a failing `sync FILE` is an error, never a
# reason to fall back to a sync whose status says nothing about that file. (Comments here, not
# in the script: the script crosses the wire on every run.)
RECV = (
    COMMON
    + r"""
hf_x() { printf 'X %s %s %s %s\n' "$hf_seq" "$1" "$2" "$3"; }
hf_fatal() { hf_first "$hf_e"; hf_x disk 1 "$hf_e"; }
hf_unlock() { [ -n "$hf_flock" ] && exec 8>&-; return 0; }
hf_le() {  # MTIME TS: MTIME - 1 <= TS for decimal strings (the metadata rule)
  case $2 in ''|*[!0-9.]*|*.*.*|.*) return 1 ;; esac
  case $1 in ''|*[!0-9.]*|*.*.*|.*) return 1 ;; esac
  hf_mi=${1%%.*}; hf_mf=; case $1 in *.*) hf_mf=${1#*.} ;; esac
  hf_ti=${2%%.*}; hf_tf=; case $2 in *.*) hf_tf=${2#*.} ;; esac
  hf_mf=${hf_mf}000000000; hf_mf=${hf_mf%"${hf_mf#?????????}"}
  hf_tf=${hf_tf}000000000; hf_tf=${hf_tf%"${hf_tf#?????????}"}
  while :; do case $hf_ti in 0?*) hf_ti=${hf_ti#0} ;; *) break ;; esac; done
  while :; do case $hf_mi in 0?*) hf_mi=${hf_mi#0} ;; *) break ;; esac; done
  hf_mi=$((hf_mi - 1))
  [ "$hf_mi" -lt "$hf_ti" ] 2>/dev/null && return 0
  [ "$hf_mi" -gt "$hf_ti" ] 2>/dev/null && return 1
  [ "1$hf_mf" -le "1$hf_tf" ] 2>/dev/null
}
hf_current() {  # the final file already is this content with valid metadata
  [ -f "$hf_f" ] || return 1
  hf_st=$(stat -L -c "%s $MT" -- "$hf_f" 2>/dev/null) || return 1
  [ "${hf_st%% *}" = "$hf_size" ] || return 1
  [ -f "$D/$hf_p.metadata" ] || return 1
  hf_a=; hf_b=; hf_c=
  { IFS= read -r hf_a; IFS= read -r hf_b; IFS= read -r hf_c; } < "$D/$hf_p.metadata" 2>/dev/null
  [ "$hf_b" = "$hf_etag" ] || return 1
  hf_le "${hf_st#* }" "$hf_c"
}
hf_digest() {  # FILE: its content id of the kind $hf_etag is
  case ${#hf_etag} in
    64) hf_o=$(sha256sum < "$1") ;;
    *) hf_o=$( { printf 'blob %s\0' "$hf_size"; cat -- "$1"; } | sha1sum) ;;
  esac
  hf_dg=${hf_o%% *}
}
hf_one() {  # one frame; 1: fatal (reply printed), 2: the input ended mid-frame
  hf_checked "$hf_p" || { hf_x "$hf_k" 1 "$hf_e"; return 1; }
  case $hf_q in
    *".$hf_etag.hfsync-part") ;;
    *) hf_x path 1 "refusing part name '$hf_q'"; return 1 ;;
  esac
  hf_safe "$hf_q" || { hf_x path 1 "refusing part name '$hf_q'"; return 1; }
  hf_part=$D/$hf_q
  if [ "$hf_off" = -1 ] && hf_current; then
    printf 'A %s %s\nH %s\n' "$hf_seq" "$hf_size" "$hf_seq"; return 0
  fi
  hf_pd=${hf_part%/*}
  [ -d "$hf_pd" ] || hf_try mkdir -p -- "$hf_pd" || { hf_fatal; return 1; }
  if ! hf_inside "$SR" "$hf_part"; then
    hf_x disk 1 "refusing to write $hf_part: its folder resolves outside $S"; return 1
  fi
  if [ -L "$hf_part" ]; then hf_x disk 1 "refusing $hf_part: it is a symbolic link"; return 1; fi
  hf_have=0
  if [ -e "$hf_part" ]; then
    # A part from before: a late receiver of a dropped connection may still be appending to
    # it, so take it under flock first (a new part has no other writer).
    if [ -n "$hf_flock" ]; then
      exec 8>>"$hf_part"
      flock -w 30 8 || { hf_x disk 1 "$hf_part is being written by another receiver"; return 1; }
    fi
    hf_have=$(stat -c %s -- "$hf_part") || { hf_x disk 1 "cannot stat $hf_part"; return 1; }
  else
    hf_e=$( { : >> "$hf_part"; } 2>&1 ) || { hf_first "$hf_e"; hf_x disk 1 "$hf_e"; return 1; }
  fi
  if [ "$hf_off" = -1 ]; then
    hf_off=$hf_have
    [ "$hf_off" -gt "$hf_size" ] && hf_off=$hf_size
    printf 'A %s %s\n' "$hf_seq" "$hf_off"
  elif [ "$hf_have" -lt "$hf_off" ]; then
    head -c $((hf_size - hf_off)) > /dev/null
    hf_unlock
    hf_x resume 0 "part shorter than planned"
    return 0
  fi
  if [ "$hf_have" != "$hf_off" ]; then
    hf_try truncate -s "$hf_off" -- "$hf_part" || { hf_fatal; return 1; }
  fi
  hf_len=$((hf_size - hf_off))
  hf_s=0
  if [ "$hf_len" -gt 0 ]; then
    hf_e=$(head -c "$hf_len" 2>&1 >> "$hf_part") || hf_s=1
  fi
  hf_now=$(stat -c "%s $MT" -- "$hf_part" 2>/dev/null)
  hf_t=${hf_now#* }  # the metadata's timestamp: the part's mtime, which the rename keeps
  if [ "${hf_now%% *}" != "$hf_size" ]; then
    hf_unlock
    if [ "$hf_s" != 0 ]; then hf_first "$hf_e"; hf_x disk 1 "$hf_e"; return 1; fi
    return 2
  fi
  hf_digest "$hf_part"
  if [ "$hf_dg" != "$hf_etag" ]; then
    rm -f -- "$hf_part"; hf_unlock
    hf_x integrity 0 "content does not match"; return 0
  fi
  if ! hf_inside_now "$RR" "$hf_f"; then
    hf_unlock; hf_x path 1 "refusing to write $hf_f: its folder resolves outside $R"; return 1
  fi
  hf_fd=${hf_f%/*}
  [ -d "$hf_fd" ] || hf_try mkdir -p -- "$hf_fd" || { hf_unlock; hf_fatal; return 1; }
  if [ -d "$hf_f" ] && [ ! -L "$hf_f" ]; then
    hf_unlock; hf_x disk 1 "cannot write $hf_f: a folder is in the way"; return 1
  fi
  # Durable before it has its final name (the python agent's Placer, the local target).
  hf_durable "$hf_part" || { hf_unlock; hf_fatal; return 1; }
  hf_try mv -f -- "$hf_part" "$hf_f" || { hf_unlock; hf_fatal; return 1; }
  hf_durable "$hf_fd" || { hf_unlock; hf_fatal; return 1; }  # the new name itself
  hf_unlock
  hf_write_meta "$hf_p" "$hf_commit" "$hf_etag" || { hf_x "$hf_k" 1 "$hf_e"; return 1; }
  printf 'K %s %s\n' "$hf_seq" "$hf_len"
}
hf_seq=-
if [ -n "$hf_missing" ]; then hf_x usage 1 "it lacks$hf_missing"; exit 4; fi
hf_root "$1"
hf_init || { hf_x "$hf_k" 1 "$hf_e"; exit 4; }
hf_sync1=
sync -- "$D" 2>/dev/null && hf_sync1=1
hf_durable() {
  if [ -n "$hf_sync1" ]; then hf_try sync -- "$1"; else sync; fi
}
while IFS= read -r hf_h; do
  IFS= read -r hf_p && IFS= read -r hf_q || exit 0
  set -f; set -- $hf_h; set +f
  hf_seq=${1:--}
  if [ $# -ne 5 ]; then hf_x usage 1 "bad frame header"; exit 4; fi
  hf_size=$2 hf_off=$3 hf_etag=$4 hf_commit=$5
  case $hf_size$hf_off in *[!0-9-]*) hf_x usage 1 "bad frame header"; exit 4 ;; esac
  case $hf_etag$hf_commit in *[!0-9a-f]*) hf_x usage 1 "bad frame header"; exit 4 ;; esac
  hf_one
  case $? in 1) exit 4 ;; 2) exit 0 ;; esac
done
exit 0
"""
)
