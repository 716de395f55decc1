"""An in-memory two-sided world that applies plans the way ``syncd.engine.sync`` does.

A remote folder maps UID -> (flags, content) and hands out UIDs from a counter; a local
folder maps key -> (flags, content); the base maps UID -> :class:`~syncd.model.Pair`.
Content is a string standing for the whole message, and its fingerprint is
``fingerprint(content.encode())``, so equal contents are "the same message".

Actions are applied strictly: an action that names a message that is not there, or
whose ``old`` flags are not the current ones, fails the test at once, because the real
engine would either skip it silently or act on the wrong message.

:class:`AccountWorld` holds several folders and applies an
:class:`~syncd.planner.actions.AccountPlan` (folder plans first, then moves, as
``AccountSync.run`` does).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from syncd.model import Fingerprint, Flag, LocalKey, Pair, Policy, Side, Uid, fingerprint
from syncd.planner import Copy, Delete, Forget, Link, Move, Plan, SetFlags, plan_folder, plan_moves
from syncd.planner.actions import AccountPlan, Action

Msg = tuple[Flag, str]

FORCE = Policy(force=True)


def fp_of(content: str) -> Fingerprint:
    return fingerprint(content.encode())


def key_of(n: int) -> LocalKey:
    """The local key numbered ``n``; zero-padded so that key order follows ``n``."""
    return LocalKey(f"k{n:06d}")


class KeyFactory:
    """Deterministic fresh local keys, shared by all folders of an account (keys are unique
    across a Maildir, which is what lets a local move keep its key)."""

    def __init__(self, start: int = 500_000) -> None:
        self.n = start

    def __call__(self) -> LocalKey:
        self.n += 1
        return key_of(self.n)


@dataclass
class FolderWorld:
    """One folder on both sides plus its base."""

    remote: dict[Uid, Msg] = field(default_factory=dict)
    local: dict[LocalKey, Msg] = field(default_factory=dict)
    base: dict[Uid, Pair] = field(default_factory=dict)
    next_uid: int = 1
    new_key: KeyFactory = field(default_factory=KeyFactory)

    def __post_init__(self) -> None:
        if self.remote:
            self.next_uid = max(self.next_uid, max(self.remote) + 1)
        if self.base:
            self.next_uid = max(self.next_uid, max(self.base) + 1)

    @classmethod
    def synced(
        cls, messages: Iterable[tuple[Flag, str]], new_key: KeyFactory | None = None
    ) -> FolderWorld:
        """A folder in which every message is on both sides and paired."""
        world = cls(new_key=new_key or KeyFactory())
        for flags, content in messages:
            uid = world.add_remote(content, flags)
            key = world.add_local(content, flags)
            world.base[uid] = Pair(uid, key, flags, fp_of(content))
        return world

    def copy(self) -> FolderWorld:
        return FolderWorld(
            dict(self.remote), dict(self.local), dict(self.base), self.next_uid, self.new_key
        )

    # -- edits by the user (local) or by another client (remote) -------------------------

    def add_remote(self, content: str, flags: Flag = Flag.NONE) -> Uid:
        uid = Uid(self.next_uid)
        self.next_uid += 1
        self.remote[uid] = (flags, content)
        return uid

    def add_local(self, content: str, flags: Flag = Flag.NONE, key: str | None = None) -> LocalKey:
        k = self.new_key() if key is None else LocalKey(key)
        assert k not in self.local
        self.local[k] = (flags, content)
        return k

    def idents(self, side: Side) -> list[Uid] | list[LocalKey]:
        return sorted(self.remote) if side is Side.REMOTE else sorted(self.local)

    def flip(self, side: Side, ident: Uid | LocalKey, mask: int) -> None:
        """Toggle the flags in ``mask`` (a bit set of :class:`Flag` values)."""
        if side is Side.REMOTE:
            flags, content = self.remote[Uid(int(ident))]
            self.remote[Uid(int(ident))] = (Flag(flags.value ^ mask), content)
        else:
            flags, content = self.local[LocalKey(str(ident))]
            self.local[LocalKey(str(ident))] = (Flag(flags.value ^ mask), content)

    def remove(self, side: Side, ident: Uid | LocalKey) -> str:
        """Delete a message (by the user or another client); returns its content."""
        if side is Side.REMOTE:
            return self.remote.pop(Uid(int(ident)))[1]
        return self.local.pop(LocalKey(str(ident)))[1]

    def reset_uidvalidity(self) -> None:
        """The server renumbered the folder: new UIDs for everything, base cleared (the
        engine passes an empty base and clears the stored pairs)."""
        old = sorted(self.remote.items())
        self.remote = {}
        self.next_uid += 1000
        for _, (flags, content) in old:
            self.add_remote(content, flags)
        self.base = {}

    # -- views ---------------------------------------------------------------------------

    def remote_snapshot(self) -> dict[Uid, Flag]:
        return {uid: flags for uid, (flags, _) in self.remote.items()}

    def local_snapshot(self) -> dict[LocalKey, Flag]:
        return {key: flags for key, (flags, _) in self.local.items()}

    def unpaired_remote(self) -> list[Uid]:
        return sorted(uid for uid in self.remote if uid not in self.base)

    def unpaired_local(self) -> list[LocalKey]:
        paired = {p.key for p in self.base.values()}
        return sorted(key for key in self.local if key not in paired)

    def remote_fps(self) -> dict[Uid, Fingerprint]:
        """Fingerprints of the unpaired remote messages, as the engine fetches them."""
        return {uid: fp_of(self.remote[uid][1]) for uid in self.unpaired_remote()}

    def local_fps(self) -> dict[LocalKey, Fingerprint]:
        return {key: fp_of(self.local[key][1]) for key in self.unpaired_local()}

    def contents(self, side: Side) -> Counter[str]:
        msgs = self.remote.values() if side is Side.REMOTE else self.local.values()
        return Counter(content for _, content in msgs)

    def plan(self, policy: Policy = FORCE, *, fps: bool = True) -> Plan:
        return plan_folder(
            self.remote_snapshot(),
            self.local_snapshot(),
            list(self.base.values()),
            policy,
            remote_fps=self.remote_fps() if fps else None,
            local_fps=self.local_fps() if fps else None,
        )

    # -- applying ------------------------------------------------------------------------

    def apply(self, plan: Plan | Sequence[Action], *, engine_order: bool = True) -> None:
        actions = plan.actions if isinstance(plan, Plan) else tuple(plan)
        if engine_order:
            actions = in_engine_order(actions)
        for action in actions:
            self.apply_action(action)
        self.check_base()

    def apply_prefix(self, actions: Sequence[Action], n: int, *, torn: bool = False) -> None:
        """Apply the first ``n`` actions, then stop as a crash would. With ``torn``, the
        crash hits in the middle of action ``n`` when it is a copy: the message is written
        on the target side but its pair is never recorded."""
        for action in actions[:n]:
            self.apply_action(action)
        if torn and n < len(actions):
            nxt = actions[n]
            if isinstance(nxt, Copy):
                self._write_copy(nxt)
        # No check_base here: the engine records links before forgets, so a crash between
        # the two may leave one key paired twice for a while; the next plan must cope.

    def apply_action(self, action: Action) -> None:
        if isinstance(action, SetFlags):
            store: dict[Uid, Msg] | dict[LocalKey, Msg]
            store = self.remote if action.side is Side.REMOTE else self.local
            assert action.ident in store, f"{action}: no such message"
            flags, content = store[action.ident]  # type: ignore[index]
            assert flags == action.old, f"{action}: flags are {flags}"
            store[action.ident] = (action.new, content)  # type: ignore[index]
        elif isinstance(action, Link):
            assert action.uid in self.remote, f"{action}: no such remote message"
            assert action.key in self.local, f"{action}: no such local message"
            self.base[action.uid] = Pair(action.uid, action.key, action.flags, action.fp)
        elif isinstance(action, Forget):
            assert action.uid in self.base, f"{action}: no such pair"
            del self.base[action.uid]
        elif isinstance(action, Delete):
            if action.side is Side.REMOTE:
                assert action.ident in self.remote, f"{action}: no such message"
                del self.remote[Uid(int(action.ident))]
            else:
                assert action.ident in self.local, f"{action}: no such message"
                del self.local[LocalKey(str(action.ident))]
        elif isinstance(action, Copy):
            uid, key, content = self._write_copy(action)
            if action.replaces is not None:
                self.base.pop(action.replaces, None)
            self.base[uid] = Pair(uid, key, action.flags, fp_of(content))
        else:  # pragma: no cover - Action is a closed union
            raise AssertionError(action)

    def _write_copy(self, action: Copy) -> tuple[Uid, LocalKey, str]:
        if action.source is Side.REMOTE:
            uid = Uid(int(action.ident))
            assert uid in self.remote, f"{action}: no such message"
            flags, content = self.remote[uid]
            assert flags == action.flags, f"{action}: flags are {flags}"
            key = self.add_local(content, action.flags)
        else:
            key = LocalKey(str(action.ident))
            assert key in self.local, f"{action}: no such message"
            flags, content = self.local[key]
            assert flags == action.flags, f"{action}: flags are {flags}"
            uid = self.add_remote(content, action.flags)
        return uid, key, content

    # -- checks --------------------------------------------------------------------------

    def check_base(self) -> None:
        """After a whole plan, the base never pairs one local key twice (the engine's
        table could hold that, but the planner would then act twice on one file)."""
        keys = Counter(p.key for p in self.base.values())
        dup = [k for k, n in keys.items() if n > 1]
        assert not dup, f"local keys paired twice: {dup}"
        for uid, pair in self.base.items():
            assert pair.uid == uid

    def problems(self) -> list[str]:
        """Everything that keeps this folder from being converged."""
        out: list[str] = []
        if len(self.remote) != len(self.local):
            out.append(f"{len(self.remote)} remote vs {len(self.local)} local messages")
        for uid in self.unpaired_remote():
            out.append(f"remote UID {uid} unpaired")
        for key in self.unpaired_local():
            out.append(f"local key {key} unpaired")
        for uid, pair in sorted(self.base.items()):
            r = self.remote.get(uid)
            lo = self.local.get(pair.key)
            if r is None or lo is None:
                out.append(f"pair {pair} lost a side")
                continue
            if not r[0] == lo[0] == pair.flags:
                out.append(f"pair {pair}: remote {r[0]}, local {lo[0]}")
            if r[1] != lo[1]:
                out.append(f"pair {pair}: remote holds {r[1]!r}, local {lo[1]!r}")
            if pair.fp is not None and pair.fp != fp_of(r[1]):
                out.append(f"pair {pair}: fingerprint is not the message's")
        return out

    def assert_converged(self) -> None:
        problems = self.problems()
        assert not problems, "\n".join(problems)


def in_engine_order(actions: Sequence[Action]) -> tuple[Action, ...]:
    """The order ``AccountSync._apply`` performs a plan in: flags (remote, then local),
    links, deletions (remote, then local), forgets, downloads by UID, then uploads."""

    def rank(a: Action) -> tuple[int, int]:
        if isinstance(a, SetFlags):
            return (0 if a.side is Side.REMOTE else 1, 0)
        if isinstance(a, Link):
            return (2, 0)
        if isinstance(a, Delete):
            return (3 if a.side is Side.REMOTE else 4, 0)
        if isinstance(a, Forget):
            return (5, 0)
        if a.source is Side.REMOTE:
            return (6, int(a.ident))
        return (7, 0)

    return tuple(sorted(actions, key=rank))


@dataclass
class AccountWorld:
    """Several folders of one account, sharing one local key space."""

    folders: dict[str, FolderWorld] = field(default_factory=dict)
    new_key: KeyFactory = field(default_factory=KeyFactory)

    def folder(self, name: str) -> FolderWorld:
        if name not in self.folders:
            self.folders[name] = FolderWorld(new_key=self.new_key)
        return self.folders[name]

    def add_synced(self, name: str, content: str, flags: Flag = Flag.NONE) -> tuple[Uid, LocalKey]:
        f = self.folder(name)
        uid = f.add_remote(content, flags)
        key = f.add_local(content, flags)
        f.base[uid] = Pair(uid, key, flags, fp_of(content))
        return uid, key

    # -- edits ---------------------------------------------------------------------------

    def user_moves(self, src: str, dst: str, key: LocalKey, *, rename: bool = False) -> LocalKey:
        """A mail reader moves a local file; notmuch-style readers keep the base name,
        others give it a new one."""
        msg = self.folder(src).local.pop(key)
        new = self.new_key() if rename else key
        self.folder(dst).local[new] = msg
        return new

    def server_moves(self, src: str, dst: str, uid: Uid) -> Uid:
        """Another client moves a message on the server: a new UID in ``dst``."""
        flags, content = self.folder(src).remote.pop(uid)
        return self.folder(dst).add_remote(content, flags)

    # -- planning and applying -----------------------------------------------------------

    def plan(
        self, policy: Policy = FORCE, *, policies: Mapping[str, Policy] | None = None
    ) -> AccountPlan:
        names = sorted(self.folders)
        policies = policies or {}
        plans = {n: self.folders[n].plan(policies.get(n, policy)) for n in names}
        return plan_moves(
            plans,
            {n: dict(self.folders[n].base) for n in names},
            local_fps={n: self.folders[n].local_fps() for n in names},
            remote_fps={n: self.folders[n].remote_fps() for n in names},
        )

    def apply(self, aplan: AccountPlan) -> None:
        for name, plan in aplan.folders.items():
            self.folders[name].apply(plan)
        for move in aplan.moves:
            self.apply_move(move)
        for f in self.folders.values():
            f.check_base()

    def apply_move(self, mv: Move) -> None:
        src, dst = self.folder(mv.src), self.folder(mv.dst)
        if mv.side is Side.REMOTE:
            # The user moved the local file: MOVE on the server, then fix the flags.
            old = src.base[mv.uid]
            assert mv.uid in src.remote, f"{mv}: no such remote message"
            assert mv.key in dst.local, f"{mv}: no local file in {mv.dst}"
            _, content = src.remote.pop(mv.uid)
            assert dst.local[mv.key][1] == content, f"{mv}: moved a different message"
            new = dst.add_remote(content, mv.flags)
            del src.base[mv.uid]
            dst.base[new] = Pair(new, mv.key, mv.flags, old.fp)
        else:
            # The message moved on the server: rename the local file into dst.
            assert mv.key in src.local, f"{mv}: no such local file"
            assert mv.uid in dst.remote, f"{mv}: no remote message in {mv.dst}"
            _, content = src.local.pop(mv.key)
            assert dst.remote[mv.uid][1] == content, f"{mv}: moved a different message"
            assert mv.key not in dst.local
            dst.local[mv.key] = (mv.flags, content)
            old = next(p for p in src.base.values() if p.key == mv.key)
            del src.base[old.uid]
            dst.base[mv.uid] = Pair(mv.uid, mv.key, mv.flags, old.fp)

    def sync(self, policy: Policy = FORCE) -> AccountPlan:
        aplan = self.plan(policy)
        self.apply(aplan)
        return aplan

    def assert_converged(self) -> None:
        problems = [f"{n}: {p}" for n, f in sorted(self.folders.items()) for p in f.problems()]
        assert not problems, "\n".join(problems)
