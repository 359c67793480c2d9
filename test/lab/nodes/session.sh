#!/bin/sh
# sshd ForceCommand for lab nodes (sshd runs it via the user's shell for every session: exec, shell
# and the sftp subsystem). It records the session for counters() and dropAfter(), then runs what the
# client asked for exactly as sshd would have: "$SHELL -c <command>", or a login shell.
# SSH_CLIENT's port is the proxy's upstream port, which is how the proxy finds the TCP connection.
port=$(echo "$SSH_CLIENT" | cut -d' ' -f2)
case "$SSH_ORIGINAL_COMMAND" in
  '') kind=shell ;;
  /usr/lib/openssh/sftp-server*|internal-sftp*) kind=sftp ;;
  *) kind=exec ;;
esac
echo "$kind $port" >>/run/lab/sessions.log
if [ "$kind" = shell ]; then exec "${SHELL:-/bin/sh}" -l; fi
exec "${SHELL:-/bin/sh}" -c "$SSH_ORIGINAL_COMMAND"
