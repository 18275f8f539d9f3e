"""Checks the Salesforce emulator with a client nobody here wrote.

simple-salesforce (PyPI) signs in with the JWT bearer grant (its own PyJWT
signer) and with client credentials (HTTP Basic), describes Case, creates,
upserts twice (created, then updated), queries, reads back and uploads a
file, and asserts each answer. Run by tests/simple_salesforce.rs:

    python simple_salesforce_check.py BASE_URL CONSUMER_KEY CONSUMER_SECRET USERNAME KEY_FILE

simple-salesforce always builds https://<instance> and
https://<domain>.salesforce.com URLs; the emulator listens on loopback
http. The only shim is a requests.Session that sends those URLs to the
emulator: every request and every answer is simple-salesforce's own.
"""

import base64
import importlib.metadata
import sys
import time
from urllib.parse import urlsplit

import requests
import simple_salesforce
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceMalformedRequest

BASE, CONSUMER_KEY, CONSUMER_SECRET, USERNAME, KEY_FILE = sys.argv[1:6]
HOSTPORT = urlsplit(BASE).netloc
VERSION = "66.0"
checks = 0


def check(cond, what):
    global checks
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)
    checks += 1
    print(f"ok  {what}")


class ToEmulator(requests.Session):
    """Sends simple-salesforce's https:// URLs to the loopback emulator."""

    def request(self, method, url, *args, **kwargs):
        parts = urlsplit(url)
        if parts.scheme == "https" and (
            parts.netloc == HOSTPORT or parts.netloc.endswith(".salesforce.com")
        ):
            url = BASE + url[len(f"https://{parts.netloc}"):]
        return super().request(method, url, *args, **kwargs)


print(f"simple-salesforce {importlib.metadata.version('simple-salesforce')}")

# 1. JWT bearer: simple-salesforce signs with PyJWT (RS256); aud is
#    https://login.salesforce.com; exp is a numeric string.
sf = Salesforce(
    username=USERNAME,
    consumer_key=CONSUMER_KEY,
    privatekey_file=KEY_FILE,
    domain="login",
    version=VERSION,
    session=ToEmulator(),
)
check(sf.session_id and "!" in sf.session_id, "JWT bearer login gives a session id")
check(sf.sf_instance == HOSTPORT, f"instance is the emulator ({sf.sf_instance})")

# A key the app does not trust is refused with Salesforce's answer.
try:
    Salesforce(
        username="nobody@example.com",
        consumer_key=CONSUMER_KEY,
        privatekey_file=KEY_FILE,
        domain="login",
        version=VERSION,
        session=ToEmulator(),
    )
    check(False, "an unknown user is refused")
except simple_salesforce.exceptions.SalesforceAuthenticationFailed as e:
    check("user hasn't approved this consumer" in str(e), f"an unknown user is refused: {e}")

# 2. Client credentials (HTTP Basic, to a My Domain).
cc = Salesforce(
    consumer_key=CONSUMER_KEY,
    consumer_secret=CONSUMER_SECRET,
    domain="fieldgate-dev.my",
    version=VERSION,
    session=ToEmulator(),
)
check(bool(cc.session_id), "client credentials login gives a session id")

# 3. Describe Case.
d = sf.Case.describe()
check(d["name"] == "Case" and d["keyPrefix"] == "500", "describe Case: name and key prefix")
fields = {f["name"]: f for f in d["fields"]}
ext = fields["Fieldgate_Proposal_Id__c"]
check(ext["externalId"] and ext["unique"] and ext["length"] == 26, "external id field: externalId, unique, 26")
check(fields["Priority"]["restrictedPicklist"], "Priority is a restricted picklist")
check(
    [v["value"] for v in fields["Priority"]["picklistValues"] if v["active"]] == ["High", "Medium", "Low"],
    "Priority's active values",
)
subject = fields["Subject"]
check(subject["createable"] and not subject["nillable"] and not subject["defaultedOnCreate"], "Subject is required on create")

# 4. Create.
created = cc.Case.create({"Subject": "Created by simple-salesforce", "Priority": "Low"})
check(created["success"] is True and created["errors"] == [], "create: success, no errors")
check(created["id"].startswith("500") and len(created["id"]) == 18, f"create: a Case id ({created['id']})")

# Refusals keep Salesforce's error shape.
try:
    sf.Case.create({"Description": "no subject"})
    check(False, "a Case without Subject is refused")
except SalesforceMalformedRequest as e:
    err = e.content[0]
    check(err["errorCode"] == "REQUIRED_FIELD_MISSING" and err["fields"] == ["Subject"], f"REQUIRED_FIELD_MISSING with fields: {err}")

# 5. Upsert twice: 201 created, then 200 updated (v46.0+).
ext_value = "01JSIMPLESALESFORCE0000000"
status = sf.Case.upsert(f"Fieldgate_Proposal_Id__c/{ext_value}", {"Subject": "Upsert one", "Priority": "High"})
check(status == 201, f"first upsert creates (status {status})")
resp = sf.Case.upsert(f"Fieldgate_Proposal_Id__c/{ext_value}", {"Subject": "Upsert two"}, raw_response=True)
check(resp.status_code == 200, f"second upsert updates (status {resp.status_code})")
body = resp.json()
check(body["created"] is False and body["success"] is True, "second upsert: created false")
case_id = body["id"]

# 6. Query; query_all follows nextRecordsUrl (small batches force paging).
q = sf.query(f"SELECT Id, Subject, Priority FROM Case WHERE Fieldgate_Proposal_Id__c = '{ext_value}'")
check(q["totalSize"] == 1 and q["done"] is True, "query finds exactly one Case")
rec = q["records"][0]
check(rec["Id"] == case_id and rec["Subject"] == "Upsert two" and rec["Priority"] == "High", "query: the updated values")
check(rec["attributes"]["type"] == "Case", "query: attributes.type")
small = {"Sforce-Query-Options": "batchSize=2"}
page = sf.query("SELECT Id, Name, Account.Name FROM Asset", headers=small)
check(page["done"] is False and page["nextRecordsUrl"].startswith(f"/services/data/v{VERSION}/query/"), "a first page with nextRecordsUrl")
assets = sf.query_all("SELECT Id, Name, Account.Name FROM Asset", headers=small)
check(assets["totalSize"] > 2 and len(assets["records"]) == assets["totalSize"], f"query_all pages through all {assets['totalSize']} assets")
check(len({a["Id"] for a in assets["records"]}) == assets["totalSize"], "no asset twice across pages")
check(assets["records"][0]["Account"]["Name"], "query_all: parent relationship field")

# 7. Read back.
got = sf.Case.get(case_id)
check(got["Subject"] == "Upsert two" and got["Fieldgate_Proposal_Id__c"] == ext_value, "read back by id")
check(got["attributes"]["url"].endswith(f"/sobjects/Case/{case_id}"), "read back: attributes.url")
by_ext = sf.Case.get_by_custom_id("Fieldgate_Proposal_Id__c", ext_value)
check(by_ext["Id"] == case_id, "read back by external id")

# 8. Upload a file linked to the Case.
data = b"fieldgate photo bytes \x00\x01\x02" * 10
cv = sf.ContentVersion.create({
    "Title": "simple-salesforce upload",
    "PathOnClient": "note.png",
    "VersionData": base64.b64encode(data).decode(),
    "FirstPublishLocationId": case_id,
})
check(cv["success"] and cv["id"].startswith("068"), f"ContentVersion created ({cv['id']})")
v = sf.query(f"SELECT Id, ContentDocumentId, FileExtension FROM ContentVersion WHERE FirstPublishLocationId = '{case_id}'")
check(v["totalSize"] == 1 and v["records"][0]["ContentDocumentId"].startswith("069"), "the file has a ContentDocument")
check(v["records"][0]["FileExtension"] == "png", "PathOnClient sets the file type")
raw = sf.session.get(f"{sf.base_url}sobjects/ContentVersion/{cv['id']}/VersionData", headers=sf.headers)
check(raw.status_code == 200 and raw.content == data, "VersionData returns the bytes")

# 9. The limit header arrives on every call.
check(sf.api_usage.get("api-usage") is not None, f"Sforce-Limit-Info parsed by simple-salesforce: {sf.api_usage}")

print(f"simple-salesforce check passed: {checks} checks")
