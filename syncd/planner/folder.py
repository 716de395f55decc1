"""Plan one folder: a three-way comparison of remote, local and base."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

from syncd.model import (
    Fingerprint,
    Flag,
    LocalKey,
    LocalSnapshot,
    Pair,
    Policy,
    RemoteSnapshot,
    Side,
    Uid,
)
from syncd.planner.actions import Action, Copy, Delete, Forget, Link, Plan, SetFlags


def merge_flags(base: Flag | None, remote: Flag, local: Flag) -> Flag:
    """Per-flag three-way merge.

    A flag changed on one side since ``base`` takes that side's value; changed on both
    sides it can only have changed the same way (flags are binary), so there is never a
    conflict. With no base (a newly matched pair) the union is taken, so no flag is lost.
    """
    if base is None:
        return remote | local
    return (remote & local) | ((remote | local) & ~base)


def _sync_flags(uid: Uid, key: LocalKey, remote: Flag, local: Flag, merged: Flag) -> list[Action]:
    out: list[Action] = []
    if remote != merged:
        out.append(SetFlags(Side.REMOTE, uid, remote, merged))
    if local != merged:
        out.append(SetFlags(Side.LOCAL, key, local, merged))
    return out


def plan_folder(
    remote: RemoteSnapshot,
    local: LocalSnapshot,
    base: Sequence[Pair],
    policy: Policy = Policy(),  # noqa: B008 - frozen value, safe as a default
    *,
    remote_fps: Mapping[Uid, Fingerprint] | None = None,
    local_fps: Mapping[LocalKey, Fingerprint] | None = None,
    guard: bool = True,
) -> Plan:
    """Decide how to make ``remote`` and ``local`` agree, given the ``base``.

    ``guard=False`` leaves the mass-deletion guard to the caller (:func:`guard_plan`),
    which the engine applies after :func:`~syncd.planner.moves.plan_moves` has turned
    moves out of this folder into moves, so archiving most of a folder is not refused.

    Pure and total. Invariants the tests check: applying the plan and planning again gives
    an empty plan; a message that has no pair in ``base`` is never deleted; swapping the
    sides swaps the direction of every action; a refused plan holds no action at all.

    ``remote_fps``/``local_fps`` are header fingerprints of unpaired messages; messages
    with equal fingerprints are paired instead of copied (adoption, UIDVALIDITY reset,
    crash recovery). Fingerprints missing from the maps simply never match.
    """
    actions: list[Action] = []
    notes: list[str] = []
    paired_keys: set[LocalKey] = set()
    # Changed survivors of a deletion on the other side, kept and copied back below.
    kept_remote: list[Pair] = []
    kept_local: list[Pair] = []
    # A key paired twice was left by a re-pairing (see kept_local below) interrupted
    # between recording the new pair and forgetting the old one: the newer UID wins.
    newest: dict[LocalKey, Uid] = {}
    for pair in base:
        newest[pair.key] = max(pair.uid, newest.get(pair.key, pair.uid))

    for pair in sorted(base, key=lambda p: p.uid):
        paired_keys.add(pair.key)
        if pair.uid != newest[pair.key]:
            actions.append(Forget(pair.uid))
            continue
        r = remote.get(pair.uid)
        lo = local.get(pair.key)
        if r is not None and lo is not None:
            if r == pair.flags and lo == pair.flags:
                continue  # the common case, kept cheap: nothing changed on either side
            merged = merge_flags(pair.flags, r, lo)
            actions.extend(_sync_flags(pair.uid, pair.key, r, lo, merged))
            if merged != pair.flags:
                actions.append(Link(pair.uid, pair.key, merged, pair.fp))
        elif r is not None:
            # Gone locally.
            if r == pair.flags:
                actions.append(Delete(Side.REMOTE, pair.uid))
                actions.append(Forget(pair.uid))
            else:
                kept_remote.append(pair)
        elif lo is not None:
            # Gone remotely.
            if lo == pair.flags:
                actions.append(Delete(Side.LOCAL, pair.key))
                actions.append(Forget(pair.uid))
            else:
                kept_local.append(pair)
        else:
            actions.append(Forget(pair.uid))

    paired_uids = {p.uid for p in base}
    new_remote = sorted(uid for uid in remote if uid not in paired_uids)
    new_local = sorted(key for key in local if key not in paired_keys)

    local_by_fp: dict[Fingerprint, list[LocalKey]] = defaultdict(list)
    for key in new_local:
        fp = (local_fps or {}).get(key)
        if fp is not None:
            local_by_fp[fp].append(key)
    remote_by_fp: dict[Fingerprint, list[Uid]] = defaultdict(list)
    for uid in new_remote:
        fp = (remote_fps or {}).get(uid)
        if fp is not None:
            remote_by_fp[fp].append(uid)

    matched_remote: set[Uid] = set()
    matched_local: set[LocalKey] = set()
    # A changed survivor is copied back, unless an earlier sync already did so and was
    # interrupted before recording the pair: then the unpaired copy is paired instead.
    # Survivors are taken in the order of their own side's identifiers, as new messages
    # are, so that swapping the sides swaps the outcome.
    for pair in kept_remote:
        r = remote[pair.uid]
        keys = local_by_fp.get(pair.fp) if pair.fp is not None else None
        if keys:
            key = keys.pop(0)
            matched_local.add(key)
            notes.append(
                f"UID {pair.uid} was deleted locally but changed on the server; "
                f"keeping it, paired with its earlier download {key}"
            )
            lo = local[key]
            merged = merge_flags(None, r, lo)
            actions.extend(_sync_flags(pair.uid, key, r, lo, merged))
            actions.append(Link(pair.uid, key, merged, pair.fp))
        else:
            notes.append(
                f"UID {pair.uid} was deleted locally but changed on the server; "
                "keeping it and downloading it again"
            )
            actions.append(Copy(Side.REMOTE, pair.uid, r, replaces=pair.uid))
    for pair in sorted(kept_local, key=lambda p: p.key):
        lo = local[pair.key]
        uids = remote_by_fp.get(pair.fp) if pair.fp is not None else None
        if uids:
            uid = uids.pop(0)
            matched_remote.add(uid)
            notes.append(
                f"local message {pair.key} was expunged on the server but changed "
                f"locally; keeping it, paired with its earlier upload UID {uid}"
            )
            r = remote[uid]
            merged = merge_flags(None, r, lo)
            # Forget before Link: a crash between them leaves the key unpaired, which the
            # next run matches by fingerprint. (The engine links first; ``newest`` above
            # covers that order.)
            actions.append(Forget(pair.uid))
            actions.extend(_sync_flags(uid, pair.key, r, lo, merged))
            actions.append(Link(uid, pair.key, merged, pair.fp))
        else:
            notes.append(
                f"local message {pair.key} was expunged on the server but changed "
                "locally; keeping it and uploading it again"
            )
            actions.append(Copy(Side.LOCAL, pair.key, lo, replaces=pair.uid))

    n_matched = 0
    if new_remote and new_local and remote_fps and local_fps:
        for uid in new_remote:
            fp = remote_fps.get(uid)
            candidates = local_by_fp.get(fp) if fp is not None else None
            if uid in matched_remote or not candidates:
                continue
            key = candidates.pop(0)
            matched_remote.add(uid)
            matched_local.add(key)
            n_matched += 1
            r, lo = remote[uid], local[key]
            merged = merge_flags(None, r, lo)
            actions.extend(_sync_flags(uid, key, r, lo, merged))
            actions.append(Link(uid, key, merged, fp))
        if n_matched:
            notes.append(f"matched {n_matched} messages present on both sides")

    for uid in new_remote:
        if uid not in matched_remote:
            actions.append(Copy(Side.REMOTE, uid, remote[uid]))
    for key in new_local:
        if key not in matched_local:
            actions.append(Copy(Side.LOCAL, key, local[key]))

    plan = Plan(tuple(actions), tuple(notes))
    return guard_plan(plan, len(remote), len(local), policy) if guard else plan


def guard_plan(plan: Plan, n_remote: int, n_local: int, policy: Policy) -> Plan:
    """The mass-deletion guard: withhold a plan that deletes too much of a folder.

    ``n_remote``/``n_local`` are the folder's message counts on each side as listed.
    A refused plan keeps its notes and holds no action at all.
    """
    if plan.refused is not None or policy.force:
        return plan
    deletes = {
        side: sum(1 for a in plan.actions if isinstance(a, Delete) and a.side is side)
        for side in (Side.REMOTE, Side.LOCAL)
    }
    for side, size in ((Side.REMOTE, n_remote), (Side.LOCAL, n_local)):
        n = deletes[side]
        if size > policy.guard_min_messages and n > policy.max_delete_share * size:
            gone_on = "locally" if side is Side.REMOTE else "on the server"
            refused = (
                f"refusing to delete {n} of {size} messages on the {side.value} side "
                f"because they vanished {gone_on}; if that is really what you want, "
                "run `syncd sync --force`"
            )
            return Plan((), plan.notes, refused)
    return plan
