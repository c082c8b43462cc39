"""Calls a running prescale's KEDA external scaler the way KEDA does, with stubs generated from proto/ by grpcio-tools.

Usage: keda_client.py STUBS_DIR TARGET NAMESPACE WORKLOAD [--ca CA --cert CERT --key KEY] [--no-cert]

Prints one JSON object: what each call answered (a status code and message for refusals). Exits non-zero, with the
reason on stderr, when grpcio or the stubs cannot be imported: a test must never pass without the client running.
"""

import argparse
import json
import sys


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("stubs")
    parser.add_argument("target")
    parser.add_argument("namespace")
    parser.add_argument("workload")
    parser.add_argument("--ca")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--no-cert", action="store_true", help="TLS without a client certificate: expect refusals")
    args = parser.parse_args()

    sys.path.insert(0, args.stubs)
    import grpc  # noqa: E402  (missing grpcio must fail the run, loudly)
    import externalscaler_pb2 as pb  # noqa: E402
    import externalscaler_pb2_grpc as pb_grpc  # noqa: E402

    if args.ca:
        read = lambda path: open(path, "rb").read()  # noqa: E731
        credentials = grpc.ssl_channel_credentials(
            root_certificates=read(args.ca),
            private_key=None if args.no_cert else read(args.key),
            certificate_chain=None if args.no_cert else read(args.cert),
        )
        channel = grpc.secure_channel(args.target, credentials)
    else:
        channel = grpc.insecure_channel(args.target)
    stub = pb_grpc.ExternalScalerStub(channel)

    def ref(metadata):
        # KEDA sends the trigger's whole metadata map, its own keys included.
        return pb.ScaledObjectRef(name="so-" + args.workload, namespace=args.namespace, scalerMetadata=metadata)

    trigger = {"scalerAddress": args.target, "workload": args.workload}
    out = {}

    def call(name, fn):
        try:
            out[name] = fn()
        except grpc.RpcError as error:
            out[name] = {"code": error.code().name, "message": error.details()}

    def spec():
        response = stub.GetMetricSpec(ref(trigger), timeout=10)
        return [
            {"metricName": s.metricName, "targetSize": s.targetSize, "targetSizeFloat": s.targetSizeFloat}
            for s in response.metricSpecs
        ]

    def metrics(metric_name, metadata=trigger):
        def run():
            request = pb.GetMetricsRequest(scaledObjectRef=ref(metadata), metricName=metric_name)
            response = stub.GetMetrics(request, timeout=10)
            return [
                {"metricName": v.metricName, "metricValue": v.metricValue, "metricValueFloat": v.metricValueFloat}
                for v in response.metricValues
            ]

        return run

    def is_active(metadata=trigger):
        return lambda: {"result": stub.IsActive(ref(metadata), timeout=10).result}

    def stream_is_active():
        # KEDA's external-push holds this open; the first message is the state now. Cancel after it, as a client
        # going away would.
        stream = stub.StreamIsActive(ref(trigger), timeout=30)
        first = next(stream)
        stream.cancel()
        return {"first": first.result}

    def stream_metric_spec():
        return [m.metricSpecs[0].metricName for m in stub.StreamMetricSpec(ref(trigger), timeout=10)]

    # The order KEDA uses: the spec when it builds the HPA, then metrics and activity on every poll.
    call("GetMetricSpec", spec)
    # KEDA strips the `s<N>-` prefix of the HPA's metric name before calling; both forms are served.
    call("GetMetrics", metrics("prescale_replicas"))
    call("GetMetricsPrefixed", metrics("s0-prescale_replicas"))
    call("IsActive", is_active())
    call("StreamIsActive", stream_is_active)
    unknown = dict(trigger, workload="no-such-workload")
    call("GetMetricsUnknownWorkload", metrics("prescale_replicas", unknown))
    call("IsActiveUnknownWorkload", is_active(unknown))
    call("GetMetricsNoWorkloadKey", metrics("prescale_replicas", {"scalerAddress": args.target}))
    call("GetMetricsUnknownMetric", metrics("prescale_demand_planned"))
    call("StreamMetricSpec", stream_metric_spec)
    channel.close()
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
