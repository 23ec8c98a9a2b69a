"""Who is in a chain, and how that changes: the network, its changes, their policy.

- ``model``: ``Network`` (members, roles, keys, funds, block limits), pure data;
- ``checks``: the rules a network must keep (shared with network.toml's loader);
- ``changes``: ``diff_networks``, the changes between two networks;
- ``policy``: ``check_update`` (may this network follow that one?) and
  ``check_approvals`` (do these admins' approvals meet the policy?);
- ``proposal``: the signed bytes of a proposal, its approvals, and the arguments of
  the ``config.update`` transaction that carries them;
- ``errors``: why an update is refused, each with the ledger's reason code.

Pure: no I/O. See docs/membership.md for the workflow around it.
"""

from p2pledger.membership.address import AddressError, HostPort, parse_address
from p2pledger.membership.changes import (
    Change,
    ChangeKind,
    describe_member,
    diff_networks,
    founding_changes,
)
from p2pledger.membership.checks import NetworkProblem, ProblemKind, network_problems
from p2pledger.membership.errors import (
    BadApproval,
    BadUpdateArgs,
    InsufficientApprovals,
    InvalidUpdate,
    MalformedProposal,
    MembershipError,
)
from p2pledger.membership.model import BlockLimits, Fund, Member, Network, Role, keys_of
from p2pledger.membership.policy import (
    UPDATE_CODES,
    Requirement,
    approving_members,
    check_approvals,
    check_update,
    immutable_differences,
    majority_of,
    required_approvals,
)
from p2pledger.membership.proposal import (
    CONFIG_UPDATE_OP,
    PROPOSAL_TYPE,
    Approval,
    Proposal,
    parse_update_args,
    sign_proposal,
    update_args,
    verify_approvals,
)

__all__ = [
    "CONFIG_UPDATE_OP",
    "PROPOSAL_TYPE",
    "UPDATE_CODES",
    "AddressError",
    "Approval",
    "BadApproval",
    "BadUpdateArgs",
    "BlockLimits",
    "Change",
    "ChangeKind",
    "Fund",
    "HostPort",
    "InsufficientApprovals",
    "InvalidUpdate",
    "MalformedProposal",
    "Member",
    "MembershipError",
    "Network",
    "NetworkProblem",
    "ProblemKind",
    "Proposal",
    "Requirement",
    "Role",
    "approving_members",
    "check_approvals",
    "check_update",
    "describe_member",
    "diff_networks",
    "founding_changes",
    "immutable_differences",
    "keys_of",
    "majority_of",
    "network_problems",
    "parse_address",
    "parse_update_args",
    "required_approvals",
    "sign_proposal",
    "update_args",
    "verify_approvals",
]
