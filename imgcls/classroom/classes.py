"""Classes: a teacher's group of students, joined by a short code, kept at server level.

    server_root()/classes/<class_id>/class.json   name, teacher, join code, members, whether the board is frozen

Membership changes hold the class's lock, and new codes the server-wide code lock, so two joins or two new
classes at once cannot lose a member or share a code. A removed student's key is remembered with the code
they were removed under: that code no longer lets them in, a fresh code from the teacher does.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
import time
import unicodedata
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from imgcls.store import access, workspace

# no 0/O, 1/I/L: a code read off a projector or a sheet of paper is typed right the first time
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 8
NAME_LIMIT = 80
CLASSES_DIR = "classes"
_ID_RE = re.compile(r"^[0-9a-f]{12}$")


class ClassroomError(workspace.WorkspaceError):
    """A classroom action that cannot go ahead, with a plain message."""


class NotAllowed(ClassroomError, PermissionError):
    """The person asking may not do this (not the class's teacher, not a member, not a teacher at all)."""


@dataclass
class ClassInfo:
    """One class as saved in its class.json."""

    id: str
    name: str
    teacher: str          # the teacher's user key
    teacher_name: str
    code: str             # the join code
    created: float
    frozen: bool = False  # a frozen board takes no new submissions
    members: dict = field(default_factory=dict)  # user key → {"name", "joined"}
    removed: dict = field(default_factory=dict)  # user key → the join code they were removed under


def classes_root() -> Path:
    """The folder holding one subfolder per class."""
    return workspace.server_root() / CLASSES_DIR


def class_dir(class_id: str) -> Path:
    """The folder of one class (a ClassroomError for an id that is not one)."""
    if not isinstance(class_id, str) or not _ID_RE.match(class_id):
        raise ClassroomError(f"There is no class '{class_id}'.")
    return classes_root() / class_id


def class_lock(class_id: str):
    """Serialise changes to one class across threads and processes."""
    class_dir(class_id)
    return workspace.file_lock(f"classes/{class_id}.lock", root=workspace.server_root())


def _codes_lock():
    return workspace.file_lock("classes/codes.lock", root=workspace.server_root())


def _save(info: ClassInfo) -> None:
    workspace.atomic_write_json(class_dir(info.id) / "class.json", dataclasses.asdict(info))


def get(class_id: str) -> ClassInfo:
    """The class of this id (a ClassroomError in plain words when there is none)."""
    data = workspace.read_json(class_dir(class_id) / "class.json")
    if not isinstance(data, dict):
        raise ClassroomError(f"There is no class '{class_id}': it may have been deleted.")
    known = {f.name for f in dataclasses.fields(ClassInfo)}
    return ClassInfo(**{k: v for k, v in data.items() if k in known})


def list_classes() -> list[ClassInfo]:
    """Every class on the server, oldest first."""
    root = classes_root()
    if not root.is_dir():
        return []
    found = [get(p.name) for p in root.iterdir() if _ID_RE.match(p.name) and (p / "class.json").exists()]
    return sorted(found, key=lambda c: c.created)


def taught_by(key: str) -> list[ClassInfo]:
    """The classes this user teaches, oldest first."""
    return [c for c in list_classes() if c.teacher == key]


def joined_by(key: str) -> list[ClassInfo]:
    """The classes this user is a member of, oldest first."""
    return [c for c in list_classes() if key in c.members]


def is_member(info: ClassInfo, key: str) -> bool:
    """Whether this user is a student of the class."""
    return key in info.members


def is_admin(key: str) -> bool:
    """Whether the user of this key is an admin (by the card saved at their sign-in)."""
    if not workspace.is_key(key or ""):
        return False
    card = workspace.read_json(access.users_root() / key / "user.json", None)
    if not isinstance(card, dict):
        return False
    user = access.User(**{k: str(card.get(k) or "") for k in ("subject", "issuer", "name", "email")})
    return access.role_of(user) == "admin"


def can_manage(info: ClassInfo, user_key: str) -> bool:
    """Whether this user may change the class and see its hidden results: its teacher, or an admin."""
    return bool(user_key) and (info.teacher == user_key or is_admin(user_key))


def check_manager(info: ClassInfo, user_key: str, what: str) -> None:
    """NotAllowed unless this user may manage the class; `what` says what they tried."""
    if not can_manage(info, user_key):
        raise NotAllowed(f"Only the teacher of '{info.name}' can {what}.")


def clean_name(name: str) -> str:
    """A usable class name, or a ClassroomError saying why not."""
    name = unicodedata.normalize("NFC", str(name or "")).strip()
    if not name:
        raise ClassroomError("A class needs a name.")
    if len(name) > NAME_LIMIT or any(unicodedata.category(ch).startswith("C") for ch in name):
        raise ClassroomError(f"A class name has at most {NAME_LIMIT} characters and no control characters.")
    return name


def normalise_code(code: str) -> str:
    """A join code as saved: capitals, without spaces or dashes (' abcd-efgh ' → 'ABCDEFGH')."""
    return re.sub(r"[\s\-]+", "", str(code or "")).upper()


def _fresh_code() -> str:
    """A code no class has (call holding the code lock)."""
    taken = {c.code for c in list_classes()}
    while True:
        code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
        if code not in taken:
            return code


def create(teacher: access.User, name: str) -> ClassInfo:
    """Make a new class taught by this user (refused unless the operator made them a teacher or admin)."""
    if access.role_of(teacher) not in ("teacher", "admin"):
        raise NotAllowed("Only teachers can make classes: ask the operator to give you the teacher role.")
    name = clean_name(name)
    access.register(teacher)  # the teacher's card: who they are, for the admin view and the board
    with _codes_lock():
        info = ClassInfo(id=uuid.uuid4().hex[:12], name=name, teacher=teacher.key, teacher_name=teacher.label,
                         code=_fresh_code(), created=time.time())
        class_dir(info.id).mkdir(parents=True)
        _save(info)
    return info


def find_by_code(code: str) -> ClassInfo | None:
    """The class this join code lets people into, or None."""
    code = normalise_code(code)
    return next((c for c in list_classes() if c.code == code), None) if code else None


def join(code: str, user: access.User) -> ClassInfo:
    """Join the class of this code as a student (the teacher joining their own class changes nothing)."""
    found = find_by_code(code)
    if found is None:
        raise ClassroomError(f"No class has the code '{str(code or '').strip()}': check it with your teacher "
                             f"(codes are {CODE_LENGTH} letters and digits).")
    if found.teacher == user.key:
        return found
    with class_lock(found.id):
        info = get(found.id)
        if info.code != normalise_code(code):
            raise ClassroomError(f"The code of '{info.name}' has just changed: ask your teacher for the new one.")
        if info.removed.get(user.key) == info.code:
            raise NotAllowed(f"You were removed from '{info.name}', so this code no longer lets you in: "
                             "ask your teacher for a new code.")
        info.removed.pop(user.key, None)
        joined = info.members.get(user.key, {}).get("joined") or time.time()
        info.members[user.key] = {"name": user.label, "joined": joined}
        _save(info)
    access.register(user)
    return info


def new_code(class_id: str, by_key: str) -> ClassInfo:
    """Give the class a fresh join code (the old one stops working; removed students may join with it)."""
    check_manager(get(class_id), by_key, "change its join code")
    with _codes_lock(), class_lock(class_id):
        info = get(class_id)
        info.code = _fresh_code()
        _save(info)
    return info


def remove_student(class_id: str, by_key: str, student_key: str) -> ClassInfo:
    """Take a student off the class; the current code no longer lets them back in."""
    check_manager(get(class_id), by_key, "remove students")
    with class_lock(class_id):
        info = get(class_id)
        if student_key not in info.members:
            raise ClassroomError(f"That person is not a student of '{info.name}'.")
        del info.members[student_key]
        info.removed[student_key] = info.code
        _save(info)
    return info


def set_frozen(class_id: str, by_key: str, frozen: bool) -> ClassInfo:
    """Freeze the board (no new submissions) or open it again."""
    check_manager(get(class_id), by_key, "freeze or open its board")
    with class_lock(class_id):
        info = get(class_id)
        info.frozen = bool(frozen)
        _save(info)
    return info


def join_link(code: str, seen_at: str = "") -> str:
    """The link that opens the Class page with this code filled in: at the operator's public_url, else at
    `seen_at` (the address the teacher's browser shows), else relative."""
    base = (access.load_config().public_url or seen_at).rstrip("/")
    return f"{base}/classroom?join={normalise_code(code)}"
