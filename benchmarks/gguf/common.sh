# Sourced by the scripts of this folder after `set -eu`: stops unless
# MOE_LLAMA_CPP is set, defaults THREADS to 2, moves to the repository root
# and, unless MOE names a moe binary, builds one into a temporary folder.
: "${MOE_LLAMA_CPP:?set MOE_LLAMA_CPP to a llama.cpp tree built under build/bin}"
THREADS=${THREADS:-2}
cd "$(dirname "$0")/../.."
if [ -z "${MOE:-}" ]; then
	MOE=$(mktemp -d)/moe
	go build -o "$MOE" ./cmd/moe
fi
