"""The settings every command takes; the CLI builds them from flags and environment variables."""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Optional

from .contract import DEFAULT_CONTRACT_BRANCH, Driver, IfAhead, Option
from .errors import BadInput


def option_value(option: Option, flag: Optional[str], environ: Mapping[str, str]) -> Optional[str]:
    """The flag's value, else the option's environment variable's, else its default.

    argparse checked a flag's value against the option's choices; this checks the others.
    """
    if flag is not None:
        return flag
    value = environ.get(option.env) or option.default
    if value is not None and option.choices and value not in option.choices:
        raise BadInput(f"{option.env}={value!r} is not one of {', '.join(option.choices)}")
    return value


@dataclass(frozen=True)
class Settings:
    """Everything a command needs besides the environment, as contract.OPTIONS define it."""

    config: str = "alembic.ini"
    section: str = "alembic"
    target: str = "head"
    database_url_env: str = "DATABASE_URL"
    driver: str = Driver.AUTO.value
    lock_timeout: float = 300.0  # seconds to wait for the advisory (migration) lock
    pg_lock_timeout: float = 5.0  # PostgreSQL lock_timeout of the migration's connections
    statement_timeout: float = 0.0  # PostgreSQL statement_timeout; 0 leaves the server's
    lock_retries: int = 5  # runs of the whole upgrade again after a lock_timeout
    result_file: Optional[str] = None
    if_ahead: str = IfAhead.SUCCEED.value
    timeout: float = 600.0
    x_args: tuple[str, ...] = ()
    show_password: bool = False
    poll_interval: float = 0.5  # `wait`: seconds between looks at the database
    plan_hash: Optional[str] = None  # `migrate`: apply only if the pending SQL hashes to this
    phase: Optional[str] = None  # contract.Phase value; None: expand with a contract branch
    contract_branch: str = DEFAULT_CONTRACT_BRANCH  # branch label of the contract revisions
