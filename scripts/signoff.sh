# SPDX-License-Identifier: GPL-2.0-or-later
# The poster's identity for an exported series; sourced after common.sh,
# not run (scripts/export-series.sh, scripts/export-libvirt.sh).
#
# In this repository every patch is authored and signed off by the
# placeholder below, and MAINTAINERS names it.  The Developer's
# Certificate of Origin needs a real person, the one who posts the
# series, so an export takes that person's identity and the placeholder
# never leaves the repository:
#
#   SIGNOFF="Name <mail>", if set; else user.name and user.email of git's
#   global (~/.gitconfig, $XDG_CONFIG_HOME/git/config, GIT_CONFIG_GLOBAL)
#   or system configuration.  Not a repository's own configuration: the
#   prepared trees have the placeholder there (scripts/prepare-tree.sh).
#
# No identity, or the placeholder (or any address under .invalid), and
# the export refuses to run.

PLACEHOLDER_NAME="qemu-gmem developers"
PLACEHOLDER_EMAIL="devel@qemu-gmem.invalid"
PLACEHOLDER="$PLACEHOLDER_NAME <$PLACEHOLDER_EMAIL>"

# git config KEY from the global configuration, else the system one
global_git_config() {
    local v
    v=$(git config --global --includes --get "$1" 2>/dev/null) || v=
    if [ -z "$v" ]; then
        case "${GIT_CONFIG_NOSYSTEM:-}" in
        1 | true | yes | on) ;;
        *) v=$(git config --system --includes --get "$1" 2>/dev/null) || v= ;;
        esac
    fi
    printf '%s' "$v"
}

# poster_identity: set POSTER ("Name <mail>"), POSTER_NAME and
# POSTER_EMAIL, or die saying how to give one.
poster_identity() {
    local how name email
    if [ -n "${SIGNOFF:-}" ]; then
        how="SIGNOFF"
        local re='^([^<>]*[^<>[:space:]])[[:space:]]+<([^<>[:space:]]+@[^<>[:space:]]+)>$'
        [[ "$SIGNOFF" =~ $re ]] ||
            die "SIGNOFF='$SIGNOFF' is not of the form 'Name <mail>'"
        name=${BASH_REMATCH[1]}
        email=${BASH_REMATCH[2]}
    else
        how="git config --global user.name/user.email"
        name=$(global_git_config user.name)
        email=$(global_git_config user.email)
        if [ -z "$name" ] || [ -z "$email" ]; then
            die "no identity to sign the series with: the Signed-off-by" \
                "must be the person who posts it.  Set" \
                "SIGNOFF=\"Your Name <you@example.org>\" or git config" \
                "--global user.name and user.email"
        fi
    fi
    shopt -s nocasematch
    if [ "$name" = "$PLACEHOLDER_NAME" ] ||
       [[ "$email" == *.invalid ]]; then
        shopt -u nocasematch
        die "the identity from $how is the placeholder ('$name <$email>')," \
            "not a person: set SIGNOFF=\"Your Name <you@example.org>\""
    fi
    shopt -u nocasematch
    POSTER_NAME=$name
    POSTER_EMAIL=$email
    POSTER="$name <$email>"
}

# git with the poster as author and committer, whatever the repository's
# own configuration says (-c wins over it)
poster_git() {
    git -c user.name="$POSTER_NAME" -c user.email="$POSTER_EMAIL" "$@"
}

# stdin to stdout, the placeholder (whole, name, address) made the poster
signoff_substitute() {
    PH=$PLACEHOLDER PN=$PLACEHOLDER_NAME PE=$PLACEHOLDER_EMAIL \
    P=$POSTER N=$POSTER_NAME E=$POSTER_EMAIL perl -pe \
        's/\Q$ENV{PH}\E/$ENV{P}/g; s/\Q$ENV{PN}\E/$ENV{N}/g;
         s/\Q$ENV{PE}\E/$ENV{E}/g'
}

# signoff_rewrite DIR BASE: rewrite the commits BASE..HEAD of the git tree
# DIR for the poster, and leave DIR at the result:
# - a commit the placeholder authored gets the poster as author (its
#   date kept); another author is kept;
# - the placeholder's Signed-off-by goes, the poster's is added last
#   unless there already;
# - in the files the series adds or changes, the placeholder becomes the
#   poster: the MAINTAINERS entry's address, and the holder of the new
#   files' "Copyright (c) 2026 qemu-gmem developers" (signoff_substitute).
# Committer and committer date are the poster and the author date, so
# the same identity exports the same commits.
signoff_rewrite() {
    local dir=$1 base=$2 c parent tree blob msg new n=0
    local an ae ad tmp idx f mode changed
    parent=$(git -C "$dir" rev-parse "$base")
    tmp=$(mktemp -d)
    idx=$tmp/index
    for c in $(git -C "$dir" rev-list --reverse "$base..HEAD"); do
        tree=$(git -C "$dir" rev-parse "$c^{tree}")
        changed=0
        for f in $(git -C "$dir" diff --name-only --no-renames --diff-filter=AM \
                   "$base" "$c"); do
            # not grep -q: with pipefail, cat-file's SIGPIPE would count
            git -C "$dir" cat-file blob "$c:$f" |
                grep -F -e "$PLACEHOLDER_NAME" -e "$PLACEHOLDER_EMAIL" \
                    >/dev/null || continue
            [ $changed = 1 ] ||
                GIT_INDEX_FILE=$idx git -C "$dir" read-tree "$tree"
            changed=1
            mode=$(git -C "$dir" ls-tree "$c" -- "$f" | cut -d' ' -f1)
            blob=$(git -C "$dir" cat-file blob "$c:$f" |
                   signoff_substitute |
                   git -C "$dir" hash-object -w --stdin)
            GIT_INDEX_FILE=$idx git -C "$dir" update-index \
                --cacheinfo "$mode,$blob,$f"
        done
        [ $changed = 0 ] ||
            tree=$(GIT_INDEX_FILE=$idx git -C "$dir" write-tree)
        an=$(git -C "$dir" log -1 --format=%an "$c")
        ae=$(git -C "$dir" log -1 --format=%ae "$c")
        ad=$(git -C "$dir" log -1 --format=%ad --date=raw "$c")
        if [ "$an <$ae>" = "$PLACEHOLDER" ]; then
            an=$POSTER_NAME
            ae=$POSTER_EMAIL
        fi
        msg=$(git -C "$dir" log -1 --format=%B "$c" |
              { grep -vxF "Signed-off-by: $PLACEHOLDER" || true; } |
              git -C "$dir" interpret-trailers --if-exists addIfDifferent \
                  --trailer "Signed-off-by: $POSTER")
        new=$(printf '%s\n' "$msg" |
              GIT_AUTHOR_NAME=$an GIT_AUTHOR_EMAIL=$ae GIT_AUTHOR_DATE=$ad \
              GIT_COMMITTER_NAME=$POSTER_NAME \
              GIT_COMMITTER_EMAIL=$POSTER_EMAIL GIT_COMMITTER_DATE=$ad \
              git -C "$dir" commit-tree "$tree" -p "$parent")
        parent=$new
        n=$((n + 1))
    done
    rm -rf "$tmp"
    git -C "$dir" reset -q --hard "$parent"
    log "signed $n commits as $POSTER"
}

# signoff_check OUT: every file exported to OUT (no subfolders) is from
# the poster, each patch has the poster's Signed-off-by, and nothing
# names the placeholder.
signoff_check() {
    local out=$1 bad
    bad=$(grep -rlIi -e 'qemu-gmem\.invalid' -e 'qemu-gmem developers' \
          "$out" || true)
    [ -z "$bad" ] || die "the export still names the placeholder" \
        "'$PLACEHOLDER', in: $(echo $bad)"
    POSTER=$POSTER python3 - "$out" <<'PY' || die "the export's identity is wrong (above)"
import email, email.policy, email.utils, glob, os, sys
poster = os.environ["POSTER"]
bad = 0
for f in sorted(glob.glob(os.path.join(sys.argv[1], "*.patch"))):
    msg = email.message_from_binary_file(open(f, "rb"),
                                         policy=email.policy.default)
    sender = str(msg["From"])
    if email.utils.parseaddr(sender) != email.utils.parseaddr(poster):
        print(f"{os.path.basename(f)}: From: {sender}, not {poster}",
              file=sys.stderr)
        bad = 1
    if f.endswith("/0000-cover-letter.patch"):
        continue
    body = open(f, encoding="utf-8", errors="replace").read()
    if f"\nSigned-off-by: {poster}\n" not in body.split("\n---\n")[0] + "\n":
        print(f"{os.path.basename(f)}: no Signed-off-by: {poster}",
              file=sys.stderr)
        bad = 1
sys.exit(bad)
PY
}
