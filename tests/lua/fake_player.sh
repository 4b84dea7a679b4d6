#!/bin/sh
# A stand-in audio player for the playback tests.
# Usage: fake_player.sh PIDFILE FILE
# Appends its pid and the file it was asked to play to PIDFILE ("<pid> <file>"), then sleeps
# for $LOFI_FAKE_PLAYER_SECONDS (default 600) as the same process, so the recorded pid is the
# player's pid.
pidfile="$1"
file="$2"
echo "$$ $file" >> "$pidfile"
exec sleep "${LOFI_FAKE_PLAYER_SECONDS:-600}"
