"""The official Python Kubernetes client against a running prescale: discovery, metric values and every refusal.

Usage: python_client.py API_URL NAMESPACE WORKLOAD[,WORKLOAD...]

The client's own models (pydantic) parse the discovery documents and the refusals' metav1.Status; the values are read
as the raw objects the client returns for a group it has no model for, as any custom client would. Prints one JSON
object with what it saw; exits non-zero on the first answer the client cannot take.
"""

import json
import sys
import time

from kubernetes import client
from kubernetes.client.exceptions import ApiException

GROUP, VERSION = "external.metrics.k8s.io", "v1beta1"
BASE = f"/apis/{GROUP}/{VERSION}"


def get(api, path, query=(), accept="application/json"):
    """GET through the client's own request path; returns the decoded object or raises ApiException."""
    params = api.param_serialize(
        method="GET",
        resource_path=path,
        query_params=list(query),
        header_params={"Accept": accept},
    )
    response = api.call_api(*params)
    response.read()
    return api.response_deserialize(response_data=response, response_types_map={"200": "object"}).data


def refusal(api, path, query=(), accept="application/json"):
    """The refusal of a GET, its body parsed by the client's V1Status model."""
    try:
        got = get(api, path, query, accept)
    except ApiException as e:
        status = client.V1Status.from_json(e.body)
        return {
            "http": e.status,
            "kind": status.kind,
            "apiVersion": status.api_version,
            "status": status.status,
            "reason": status.reason,
            "code": status.code,
            "message": status.message,
            "content_type": e.headers.get("Content-Type") if e.headers else None,
        }
    raise SystemExit(f"{path} {list(query)} was answered, not refused: {got}")


def main():
    url, namespace, workloads = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
    config = client.Configuration()
    config.host = url
    api = client.ApiClient(config)

    # The aggregator serves /apis; the group's own document comes from us.
    ours = [client.V1APIGroup.from_dict(get(api, f"/apis/{GROUP}"))]
    resources = client.CustomObjectsApi(api).get_api_resources(GROUP, VERSION)

    values = {}
    deadline = time.monotonic() + 120
    for w in workloads:
        while True:
            try:
                got = get(api, f"{BASE}/namespaces/{namespace}/prescale_replicas", [("labelSelector", f"workload={w}")])
                break
            except ApiException as e:
                if e.status != 503 or time.monotonic() > deadline:
                    raise
                time.sleep(1)
        values[w] = got

    refusals = {
        "unknown_workload": refusal(
            api, f"{BASE}/namespaces/{namespace}/prescale_replicas", [("labelSelector", "workload=no-such-workload")]
        ),
        "unknown_metric": refusal(api, f"{BASE}/namespaces/{namespace}/no_such_metric"),
        "bad_selector": refusal(
            api, f"{BASE}/namespaces/{namespace}/prescale_replicas", [("labelSelector", "workload in (a")]
        ),
        "unacceptable": refusal(
            api,
            f"{BASE}/namespaces/{namespace}/prescale_replicas",
            [("labelSelector", f"workload={workloads[0]}")],
            accept="application/yaml",
        ),
    }
    print(
        json.dumps(
            {
                "group": [
                    {"name": g.name, "preferred": g.preferred_version.group_version, "versions": [v.version for v in g.versions]}
                    for g in ours
                ],
                "resources": [
                    {"name": r.name, "namespaced": r.namespaced, "kind": r.kind, "verbs": r.verbs}
                    for r in resources.resources
                ],
                "values": values,
                "refusals": refusals,
            }
        )
    )


if __name__ == "__main__":
    main()
