"""Runs the conformance cases of conformance_test.go with boto3 and with the AWS CLI.

Reads a JSON spec on stdin and prints one JSON document: what each client read for each case
(error code and message, or the output), the awscli and boto3 versions, and the IMDSv2 reads.
The AWS CLI runs in this process through awscli.clidriver: the code of the `aws` command
without a second's start-up per call. Each client's modules are imported only when the spec
names it, so the interpreter of a packaged `aws` (Debian's) can run the CLI client alone.
"""

import contextlib
import datetime
import io
import json
import re
import sys
import time
import urllib.error
import urllib.request

AWSCLI_ERROR = re.compile(r"An error occurred \(([^)]*)\) when calling the (\w+) operation(?: \([^)]*\))?: (.*)", re.S)


def substitute(value, variables):
    """Replaces {{name}} in every string of value."""
    if isinstance(value, str):
        for k, v in variables.items():
            value = value.replace("{{" + k + "}}", v)
        return value
    if isinstance(value, list):
        return [substitute(v, variables) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, variables) for k, v in value.items()}
    return value


def lookup(doc, path):
    """Follows a dotted path (list indexes as numbers) into a decoded JSON document."""
    for part in path.split("."):
        if isinstance(doc, list):
            doc = doc[int(part)]
        else:
            doc = doc[part]
    return doc


def plain(out):
    """A boto3 output as JSON would carry it (times as text, no response metadata)."""
    out = dict(out)
    out.pop("ResponseMetadata", None)
    return json.loads(json.dumps(out, default=lambda v: v.isoformat() if isinstance(v, datetime.datetime) else str(v)))


def run_boto3(spec, client_spec, doc):
    import boto3
    import botocore
    from botocore.config import Config
    from botocore.exceptions import ClientError

    doc["boto3_version"], doc["botocore_version"] = boto3.__version__, botocore.__version__
    cfg = Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=5, read_timeout=30)
    clients = {}
    variables = dict(client_spec["vars"])
    results = []
    for case in spec["cases"]:
        svc = case["service"]
        if svc not in clients:
            clients[svc] = boto3.client(svc, endpoint_url=spec["endpoint"], region_name=spec["region"], config=cfg)
        params = substitute(case["params"], variables)
        res = {"case": case["name"]}
        try:
            out = plain(getattr(clients[svc], botocore.xform_name(case["operation"]))(**params))
            res["out"] = out
            for var, path in case.get("save", {}).items():
                variables[var] = str(lookup(out, path))
        except ClientError as e:
            res["code"] = e.response.get("Error", {}).get("Code", "")
            res["message"] = e.response.get("Error", {}).get("Message", "")
        except Exception as e:  # a parse failure is a result too: report it, do not stop
            res["code"] = "<" + type(e).__name__ + ">"
            res["message"] = str(e)
        results.append(res)
    return results


def cli_args(spec, case, params):
    svc_op = re.sub(r"(?<!^)(?=[A-Z])", "-", case["operation"]).lower()
    return ["--endpoint-url", spec["endpoint"], "--output", "json", case["service"], svc_op,
            "--cli-input-json", json.dumps(params)]


def run_awscli(spec, client_spec, doc):
    import awscli
    from awscli.clidriver import create_clidriver

    doc["awscli_version"] = awscli.__version__

    driver = create_clidriver()
    variables = dict(client_spec["vars"])
    results = []
    for case in spec["cases"]:
        params = substitute(case["params"], variables)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = driver.main(cli_args(spec, case, params))
        res = {"case": case["name"], "rc": rc}
        if rc == 0:
            res["out"] = json.loads(out.getvalue() or "{}")
            for var, path in case.get("save", {}).items():
                variables[var] = str(lookup(res["out"], path))
        else:
            m = AWSCLI_ERROR.search(err.getvalue())
            res["code"] = m.group(1) if m else "<unparsed>"
            res["message"] = m.group(3).strip() if m else err.getvalue().strip()
        results.append(res)
    return results


def imds(url):
    """IMDSv2 as an instance's own tools speak it: a token by PUT, then reads with the token."""
    got = {}
    req = urllib.request.Request(url + "/latest/api/token", method="PUT",
                                 headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"})
    with urllib.request.urlopen(req, timeout=5) as r:
        token = r.read().decode()
    got["token_len"] = len(token)
    req = urllib.request.Request(url + "/latest/meta-data/instance-id", headers={"X-aws-ec2-metadata-token": token})
    with urllib.request.urlopen(req, timeout=5) as r:
        got["instance_id"] = r.read().decode()
    req = urllib.request.Request(url + "/latest/meta-data/events/maintenance/scheduled", headers={"X-aws-ec2-metadata-token": token})
    with urllib.request.urlopen(req, timeout=5) as r:
        got["scheduled"] = json.loads(r.read().decode())
    try:
        urllib.request.urlopen(url + "/latest/meta-data/instance-id", timeout=5)
        got["without_token"] = 200
    except urllib.error.HTTPError as e:
        got["without_token"] = e.code
    return got


def main():
    spec = json.load(sys.stdin)
    doc = {"results": {}, "seconds": {}}
    for client_spec in spec["clients"]:
        began = time.monotonic()
        run = run_boto3 if client_spec["kind"] == "boto3" else run_awscli
        doc["results"][client_spec["name"]] = run(spec, client_spec, doc)
        doc["seconds"][client_spec["name"]] = round(time.monotonic() - began, 3)
    if spec.get("imds"):
        doc["imds"] = imds(spec["imds"])
    json.dump(doc, sys.stdout)


if __name__ == "__main__":
    main()
