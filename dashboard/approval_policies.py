"""The admins' approval policies over the API: `/api/v1/approval-policies[/{repository}/{environment}]`.

A server-side policy is enforced next to the repository's own `approval:` block, each on its own
(`reconciler.policies`), so a commit cannot lower the bar an admin set. Reading needs the read
permission on the environment; setting and removing need admin on `*`. Every change is audited.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response, status

from dashboard import schemas as s
from dashboard.access import Permission, Principal
from dashboard.actions import Refusal, require
from dashboard.context import Context
from reconciler import policies
from store import ApprovalPolicyRow


def _out(row: ApprovalPolicyRow) -> s.ApprovalPolicyOut:
    return s.ApprovalPolicyOut(repository=row.repository, environment=row.environment, required=row.required,
                               min_approvals=row.min_approvals, approvers=list(row.approvers),
                               updated_by=row.updated_by, updated_at=row.updated_at)


def add_policy_routes(router: APIRouter, ctx: Context, caller_dep: Any) -> None:
    db = ctx.services.database

    @router.get("/approval-policies", tags=["approvals"],
                summary="The admins' approval policies (each enforced next to the repository's own)")
    def list_policies(caller: Principal = caller_dep) -> list[s.ApprovalPolicyOut]:
        with db.session() as session:
            return [_out(row) for row in policies.server_policies(session)
                    if caller.can(Permission.READ, f"{row.repository}/{row.environment}")]

    @router.put("/approval-policies/{repository}/{environment}", tags=["approvals"],
                summary="Set an environment's server-side approval policy (admin)")
    def set_policy(repository: str, environment: str, body: s.ApprovalPolicyIn,
                   caller: Principal = caller_dep) -> s.ApprovalPolicyOut:
        require(caller, Permission.ADMIN)
        try:
            policy = policies.parse_policy(body.required, body.min_approvals, body.approvers)
            with db.session() as session:
                return _out(policies.set_server_policy(session, repository, environment, policy, caller.name))
        except policies.PolicyError as error:
            raise Refusal(422, str(error), field=error.field) from None

    @router.delete("/approval-policies/{repository}/{environment}", tags=["approvals"], status_code=204,
                   summary="Remove an environment's server-side approval policy (admin)")
    def remove_policy(repository: str, environment: str, caller: Principal = caller_dep) -> Response:
        require(caller, Permission.ADMIN)
        with db.session() as session:
            if not policies.remove_server_policy(session, repository, environment, caller.name):
                raise Refusal(status.HTTP_404_NOT_FOUND,
                              f"no server-side approval policy for {repository}/{environment}")
        return Response(status_code=204)
