# The Claude Code CLI that the agent drives (its npm package ships a native
# binary); the Claude tests run it against the scripted model server.
source "$(dirname "$0")/../lib.sh"
npm_install "$ROOT/tools/claude"
"$ROOT/tools/claude/node_modules/.bin/claude" --version
