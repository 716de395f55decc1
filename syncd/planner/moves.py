"""Find messages that moved between folders among the per-folder plans."""

from __future__ import annotations

from collections.abc import Collection, Mapping

from syncd.model import Fingerprint, LocalKey, Pair, Policy, Side, Uid
from syncd.planner.actions import AccountPlan, Action, Copy, Delete, Forget, Move, Plan
from syncd.planner.folder import guard_plan


def plan_moves(
    plans: Mapping[str, Plan],
    bases: Mapping[str, Mapping[Uid, Pair]],
    *,
    local_fps: Mapping[str, Mapping[LocalKey, Fingerprint]] | None = None,
    remote_fps: Mapping[str, Mapping[Uid, Fingerprint]] | None = None,
    policy: Policy | None = None,
    sizes: Mapping[str, tuple[int, int]] | None = None,
    elsewhere: Mapping[Fingerprint, Collection[tuple[str, Uid]]] | None = None,
) -> AccountPlan:
    """Turn "delete in folder A" + "copy the same message into folder B" into a move.

    A message is the same when it has the same local key (mail readers and notmuch keep
    the base name when they move a file) or the same header fingerprint as the deleted
    pair. With ``policy`` and ``sizes`` (folder -> (remote count, local count)) the
    mass-deletion guard is applied to every folder afterwards; plan_folder must then have
    been called with ``guard=False``. A local move becomes a server-side MOVE, a remote
    move a local rename: the message is neither uploaded nor downloaded again. Pure;
    plans that were refused are left as they are.

    A restore (a message gone on one side but changed on the other) whose message is
    still paired elsewhere (another folder, or another copy in the same one) is a
    deletion after all: the message was moved between two syncs (a reader's move racing
    syncd's folder-by-folder listing, or mutt's save whose copy was synced before the
    original was deleted), and bringing it back would leave it twice. It is deleted
    instead; the change made to that copy is dropped, the message lives on in the other.
    ``elsewhere`` adds pairs of folders not in ``plans`` (the daemon syncs a few folders at
    a time): fingerprint -> (folder, UID) of the pairs the state holds with it.
    """
    local_fps = local_fps or {}
    remote_fps = remote_fps or {}
    # Pairs whose message vanished on one side, by the side the survivor is on, indexed
    # by key and by fingerprint, with the actions that would delete or restore it. A
    # survivor changed since the base is restored (a Copy with ``replaces``) instead of
    # deleted: mutt's save to another folder racing a flag change on the server.
    gone: dict[Side, dict[str, tuple[str, Pair, tuple[Action, ...]]]] = {
        Side.REMOTE: {},
        Side.LOCAL: {},
    }
    for folder, plan in plans.items():
        base = bases.get(folder, {})
        by_key = {p.key: p for p in base.values()}
        for action in plan.actions:
            undo: tuple[Action, ...]
            if isinstance(action, Delete):
                side = action.side
                if side is Side.REMOTE:
                    pair = base.get(Uid(int(action.ident)))
                else:
                    pair = by_key.get(LocalKey(str(action.ident)))
                if pair is None:
                    continue
                undo = (action, Forget(pair.uid))
            elif isinstance(action, Copy) and action.replaces is not None:
                side = action.source  # the changed survivor is on the copy's source side
                pair = base.get(action.replaces)
                if pair is None:
                    continue
                undo = (action,)
            else:
                continue
            gone[side]["k:" + pair.key] = (folder, pair, undo)
            if pair.fp is not None:
                gone[side].setdefault("f:" + pair.fp, (folder, pair, undo))

    moves: list[Move] = []
    used: set[tuple[str, Uid]] = set()
    new_plans: dict[str, list[Action]] = {f: list(p.actions) for f, p in plans.items()}
    for folder, plan in plans.items():
        for action in plan.actions:
            if not isinstance(action, Copy) or action.replaces is not None:
                continue
            # A local copy to upload pairs with a remote delete elsewhere, and vice versa.
            target = action.source.other
            if action.source is Side.LOCAL:
                key = LocalKey(str(action.ident))
                fp = local_fps.get(folder, {}).get(key)
                probe = ["k:" + key] + (["f:" + fp] if fp else [])
            else:
                fp = remote_fps.get(folder, {}).get(Uid(int(action.ident)))
                probe = ["f:" + fp] if fp else []
            hit = None
            for p in probe:
                cand = gone[target].get(p)
                if cand and cand[0] != folder and (cand[0], cand[1].uid) not in used:
                    hit = cand
                    break
            if hit is None:
                continue
            src, pair, undo = hit
            used.add((src, pair.uid))
            if action.source is Side.LOCAL:
                move = Move(
                    Side.REMOTE, src, folder, pair.uid, LocalKey(str(action.ident)), action.flags
                )
            else:
                move = Move(Side.LOCAL, src, folder, Uid(int(action.ident)), pair.key, action.flags)
            moves.append(move)
            new_plans[folder].remove(action)
            for done in undo:
                new_plans[src].remove(done)

    moved_fps = {
        pair.fp
        for index in gone.values()
        for src, pair, _ in index.values()
        if pair.fp is not None and (src, pair.uid) in used
    }
    _drop_restores_of_moved(new_plans, bases, gone, moved_fps, elsewhere or {})
    folders = {f: Plan(tuple(new_plans[f]), p.notes, p.refused) for f, p in plans.items()}
    if policy is not None and sizes is not None:
        # The mass-deletion guard runs after moves are taken out, so archiving most of a
        # folder is a set of moves, not a refused mass deletion. A move touching a
        # refused folder is dropped with it: nothing happens to that message this time.
        folders = {f: guard_plan(p, *sizes.get(f, (0, 0)), policy) for f, p in folders.items()}
        moves = [m for m in moves if not folders[m.src].refused and not folders[m.dst].refused]
    return AccountPlan(folders, tuple(moves))


def _drop_restores_of_moved(
    plans: dict[str, list[Action]],
    bases: Mapping[str, Mapping[Uid, Pair]],
    gone: Mapping[Side, Mapping[str, tuple[str, Pair, tuple[Action, ...]]]],
    moved_fps: set[Fingerprint],
    elsewhere: Mapping[Fingerprint, Collection[tuple[str, Uid]]],
) -> None:
    # Only the fingerprints of restored messages are looked up: none, no index of the
    # account's pairs (a resync of 100 000 messages would build one of 100 000 entries).
    wanted: set[Fingerprint] = set()
    for folder, actions in plans.items():
        base = bases.get(folder, {})
        for action in actions:
            if isinstance(action, Copy) and action.replaces is not None:
                restored = base.get(action.replaces)
                if restored is not None and restored.fp is not None:
                    wanted.add(restored.fp)
    if not wanted:
        return
    vanishing = {(f, pair.uid) for index in gone.values() for f, pair, _ in index.values()}
    kept: dict[Fingerprint, set[tuple[str, Uid]]] = {}
    for fp, where in elsewhere.items():
        if fp in wanted:
            kept[fp] = {(f, uid) for f, uid in where if f not in bases}
    for fp in moved_fps & wanted:  # a message moved in this plan lives on in its new folder
        kept.setdefault(fp, set()).add(("", Uid(0)))
    for folder, base in bases.items():
        for pair in base.values():
            if pair.fp in wanted and (folder, pair.uid) not in vanishing:
                kept.setdefault(pair.fp, set()).add((folder, pair.uid))
    for folder, actions in plans.items():
        base = bases.get(folder, {})
        for i, action in enumerate(actions):
            if not isinstance(action, Copy) or action.replaces is None:
                continue
            restored = base.get(action.replaces)
            if restored is None or restored.fp is None:
                continue
            if not kept.get(restored.fp, set()) - {(folder, restored.uid)}:
                continue
            ident = restored.uid if action.source is Side.REMOTE else restored.key
            actions[i : i + 1] = [Delete(action.source, ident), Forget(restored.uid)]
