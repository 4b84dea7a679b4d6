#!/bin/sh
# A stand-in audio player for the playback tests.
# Usage: fake_player.sh PIDFILE FILE
# Appends its pid and the file it was asked to play to PIDFILE ("<pid> <file>"), then sleeps
# for $LOFI_FAKE_PLAYER_SECONDS (default 600) as the same process, so the recorded pid is the
# player's pid.
#   LOFI_FAKE_PLAYER_IGNORE_TERM=1   ignore SIGTERM (only SIGKILL ends it)
#   LOFI_FAKE_PLAYER_FAIL=TEXT       write some lines to stderr, TEXT last, and exit with 3
pidfile="$1"
file="$2"
if [ "$LOFI_FAKE_PLAYER_IGNORE_TERM" = 1 ]; then
  trap '' TERM # before the pid is recorded; an ignored signal stays ignored across exec
fi
echo "$$ $file" >> "$pidfile"
if [ -n "$LOFI_FAKE_PLAYER_FAIL" ]; then
  printf 'fake player: starting\nfake player: %s\n\n' "$LOFI_FAKE_PLAYER_FAIL" >&2
  exit 3
fi
exec sleep "${LOFI_FAKE_PLAYER_SECONDS:-600}"
