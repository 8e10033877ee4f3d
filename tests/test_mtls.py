"""Caller identity bound to the connection, through the real Envoy over real mTLS.

The demo's mesh, with the sidecar → inbound hop over mTLS: the test makes its own CA and
certificates whose URI SAN is a SPIFFE ID as Istio issues them, `meshver render envoy` gives the
inbound listener a DownstreamTlsContext that requires a client certificate and each order
sidecar's cluster an UpstreamTlsContext with the sidecar's own certificate, and the inbound
filter accepts a caller claim only from a peer whose SPIFFE ID `caller_spiffe_ids` lists for
that service. Order's own services call user through their sidecars, as in the demo.
"""

import datetime
import ipaddress
import json
import ssl

import pytest

import harness
from harness import free_port, http1, http2

CATALOG = json.loads(harness.DEMO_CATALOG.read_text())
TRUST_DOMAIN = "spiffe://cluster.local/ns/shop/sa"
ORDER_ID = f"{TRUST_DOMAIN}/order"
USER_ID = f"{TRUST_DOMAIN}/user"
BILLING_ID = f"{TRUST_DOMAIN}/billing"
BOUND = {"trust_caller_headers": True, "caller_spiffe_ids": {"order": [ORDER_ID]}}


class Authority:
    """A CA of the test's own that issues workload certificates as Istio does: empty subject, one
    critical URI SAN (the SPIFFE ID), for client and server use. PEM files in `folder`."""

    def __init__(self, folder, name):
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        self.folder, self.name = folder, name
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, f"meshver test {name}")])
        self.subject = subject
        builder = self._builder(subject, self.key.public_key()).issuer_name(subject)
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        builder = builder.add_extension(self._usage(ca=True), critical=True)
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()),
                                        critical=False)
        self.cert = builder.sign(self.key, hashes.SHA256())
        self.ca_path = self._write(f"{name}-ca.pem", self.cert)

    @staticmethod
    def _builder(subject, public_key):
        from cryptography import x509

        now = datetime.datetime.now(datetime.timezone.utc)
        return (x509.CertificateBuilder().subject_name(subject).public_key(public_key)
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=1)))

    @staticmethod
    def _usage(ca):
        from cryptography import x509

        return x509.KeyUsage(digital_signature=not ca, content_commitment=False, key_encipherment=not ca,
                             data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                             encipher_only=False, decipher_only=False)

    def _write(self, file_name, cert):
        from cryptography.hazmat.primitives import serialization

        path = self.folder / file_name
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return path

    def issue(self, spiffe_id, name):
        """A workload certificate for `spiffe_id` (and 127.0.0.1, for clients that check the
        host): (cert path, key path)."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID

        key = ec.generate_private_key(ec.SECP256R1())
        sans = [x509.UniformResourceIdentifier(spiffe_id), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        cert = (self._builder(x509.Name([]), key.public_key()).issuer_name(self.subject)
                .add_extension(x509.SubjectAlternativeName(sans), critical=True)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(self._usage(ca=False), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                      ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                               critical=False)
                .sign(self.key, hashes.SHA256()))
        key_path = self.folder / f"{self.name}-{name}-key.pem"
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        return self._write(f"{self.name}-{name}.pem", cert), key_path

    def files(self, spiffe_id, name):
        """The mesh file's TLS fields for a workload of `spiffe_id`: cert, key, CA."""
        cert, key = self.issue(spiffe_id, name)
        return {"cert": str(cert), "key": str(key), "ca": str(self.ca_path)}

    def client(self, spiffe_id=None, name="client"):
        """An ssl context that trusts this CA, presenting a certificate for `spiffe_id` if given."""
        context = ssl.create_default_context(cafile=str(self.ca_path))
        if spiffe_id:
            context.load_cert_chain(*map(str, self.issue(spiffe_id, name)))
        return context


class MtlsMesh(harness.EnvoyStack):
    """The demo's upstreams and one Envoy: the demo's inbound listener, over mTLS and binding
    claims, and its order sidecars (`order-<version>-sidecar`), each with order's certificate;
    then the variants the tests need: the inbound listener with an optional client certificate
    and in plaintext, a sidecar with billing's certificate and one without TLS. Ports by
    listener name."""

    def __init__(self, folder):
        super().__init__()
        self.ca = Authority(folder, "mesh")
        self.rogue = Authority(folder, "rogue")
        self.ports = {}
        with self.starting():
            self._start()

    def port(self, name):
        return self.ports.setdefault(name, free_port())

    def url(self, listener, scheme="http"):
        return f"{scheme}://127.0.0.1:{self.port(listener)}"

    def _start(self):
        compiled = harness.compiled_catalog(CATALOG)
        inbound = self.port("inbound")
        to_inbound = {"forward_to": inbound, "catalog": CATALOG}
        sidecar_tls = lambda spiffe_id, name: {**self.ca.files(spiffe_id, name), "server_spiffe_id": USER_ID}
        listeners = [
            # The callee's inbound side: mTLS required, claims bound to the peer.
            {"name": "inbound", "port": inbound, "catalog": CATALOG, **BOUND,
             "tls": self.ca.files(USER_ID, "inbound")},
            # The same, with TLS whose client certificate is optional, and in plaintext.
            {"name": "inbound-optional", "port": self.port("inbound-optional"), "catalog": CATALOG, **BOUND,
             "tls": {**self.ca.files(USER_ID, "inbound-optional"), "require_client_certificate": False}},
            {"name": "inbound-plaintext", "port": self.port("inbound-plaintext"), "catalog": CATALOG, **BOUND},
            # A sidecar speaking for order 2.0.0 with billing's certificate, and one without TLS.
            {"name": "forged-sidecar", "port": self.port("forged-sidecar"), **to_inbound,
             "caller": {"service": "order", "version": "2.0.0"}, "forward_tls": sidecar_tls(BILLING_ID, "forged")},
            {"name": "plaintext-sidecar", "port": self.port("plaintext-sidecar"), **to_inbound,
             "caller": {"service": "order", "version": "2.0.0"}},
        ]
        for service in compiled["services"]:
            for deployment in service["deployments"]:
                route, extra = deployment["route"], []
                if deployment["requires"]:
                    # Each order deployment's own sidecar, with order's certificate.
                    listeners.append({"name": f"{route}-sidecar", "port": self.port(f"{route}-sidecar"),
                                      **to_inbound,
                                      "caller": {"service": service["name"], "version": deployment["version"]},
                                      "forward_tls": sidecar_tls(ORDER_ID, route)})
                    extra = ["--user-url", self.url(f"{route}-sidecar")]
                self.upstreams[route] = harness.Upstream(service["name"], deployment["version"],
                                                         extra_args=extra)
        config = harness.render_envoy(free_port(), listeners, {r: up.port for r, up in self.upstreams.items()})
        self.config = config
        self.envoy = harness.Envoy(config, name="mtls")

    def user_requests(self):
        """Requests the user deployments' clusters sent upstream, summed."""
        stats = self.envoy.stats()
        return sum(stats.get(f"cluster.{route}.upstream_rq_total", 0)
                   for route in self.upstreams if route.startswith("user-"))


@pytest.fixture(scope="module")
def mesh(tmp_path_factory):
    with MtlsMesh(tmp_path_factory.mktemp("mtls")) as stack:
        yield stack
        stack.envoy.check_no_wasm_critical()


def caller_mismatch(answer, peer):
    """Asserts a 403 caller-mismatch answer for a claim of order/2.0.0 by `peer` (None: no peer)."""
    assert answer.status == 403, answer.body
    assert answer.header("content-type") == "application/problem+json"
    problem = answer.json
    assert problem["type"] == "urn:meshver:problem:caller-mismatch"
    assert (problem["status"], problem["service"], problem["caller"]) == (403, "user", "order/2.0.0")
    assert problem["peer"] == peer
    return problem


def test_the_rendered_hop_is_mtls(mesh):
    """What `render envoy` made of the mesh file's TLS fields: the inbound listener requires a
    client certificate of the CA; each order sidecar presents its own toward it and checks the
    listener's SPIFFE ID; the listeners without TLS fields have none."""
    listeners = {l["name"]: l for l in mesh.config["static_resources"]["listeners"]}
    clusters = {c["name"]: c for c in mesh.config["static_resources"]["clusters"]}
    inbound = listeners["inbound"]["filter_chains"][0]["transport_socket"]["typed_config"]
    assert inbound["@type"].endswith("DownstreamTlsContext") and inbound["require_client_certificate"] is True
    assert inbound["common_tls_context"]["validation_context"]["trusted_ca"]["filename"] == str(mesh.ca.ca_path)
    optional = listeners["inbound-optional"]["filter_chains"][0]["transport_socket"]["typed_config"]
    assert optional["require_client_certificate"] is False
    for name in ("order-1.2.0-sidecar", "order-2.0.0-sidecar"):
        upstream = clusters[f"{name}-forward"]["transport_socket"]["typed_config"]
        assert upstream["@type"].endswith("UpstreamTlsContext")
        context = upstream["common_tls_context"]
        assert context["tls_certificates"][0]["certificate_chain"]["filename"].endswith(f"mesh-{name[:-8]}.pem")
        assert context["validation_context"]["match_typed_subject_alt_names"] == [
            {"san_type": "URI", "matcher": {"exact": USER_ID}}]
    assert "transport_socket" not in listeners["inbound-plaintext"]["filter_chains"][0]
    assert "transport_socket" not in clusters["plaintext-sidecar-forward"]


def test_sidecars_with_their_own_certificate_are_honoured(mesh):
    """order's services call user through their own sidecars, over mTLS with order's
    certificate: the inbound listener honours each claim, and the decisions are today's: order
    2.0.0 (requires user >=2.1) reaches only 2.1.0, order 1.2.0 reaches 1.4.0."""
    for _ in range(20):
        answer = http1("POST", mesh.upstreams["order-2.0.0"].url + "/order")
        assert answer.status == 200, answer.body
        check = answer.json["user_check"]
        assert check["version"] == "2.1.0", check
        assert check["headers"]["x-meshver-caller"] == "order/2.0.0"
    answer = http1("POST", mesh.upstreams["order-1.2.0"].url + "/order")
    assert answer.status == 200, answer.body
    check = answer.json["user_check"]
    assert (check["version"], check["headers"]["x-meshver-caller"]) == ("1.4.0", "order/1.2.0")
    # The same hop as the filter tests drive it: a JSON request sent to the sidecar itself.
    for send in (http1, http2):
        answer = send("POST", mesh.url("order-2.0.0-sidecar") + "/login", {"content-type": "application/json"})
        assert (answer.status, answer.json["version"]) == (200, "2.1.0"), answer.body
        assert answer.json["headers"]["x-meshver-caller"] == "order/2.0.0"


def test_a_client_with_the_callers_certificate_is_that_caller(mesh):
    """A claim is bound to the certificate, not to the sidecar: a client holding order's
    certificate is order, and the callee's `accepts` applies to it (user 1.4.0 accepts order <2),
    over HTTP/1.1 and HTTP/2 (ALPN)."""
    order = mesh.ca.client(ORDER_ID, "direct-order")
    url = mesh.url("inbound", "https") + "/login"
    for send in (http1, http2):
        refused = send("POST", url, {"x-meshver-caller": "order/2.0.0", "x-api-version": "1"}, tls=order)
        assert refused.status == 409, refused.body
        assert refused.json["type"] == "urn:meshver:problem:incompatible-caller"
        assert refused.json["caller"] == "order/2.0.0"
        served = send("POST", url, {"x-meshver-caller": "order/2.0.0", "x-api-version": "2.1"}, tls=order)
        assert (served.status, served.json["version"]) == (200, "2.1.0"), served.body
        assert served.json["headers"]["x-meshver-caller"] == "order/2.0.0"


def test_a_sidecar_whose_certificate_names_another_service_is_refused(mesh):
    """A sidecar configured to speak for order 2.0.0, whose certificate says billing: its claim
    is refused at the inbound listener with 403, and no user deployment sees the request."""
    before_counted = mesh.envoy.meshver_requests("user", "caller_mismatch")
    before = mesh.user_requests()
    for send in (http1, http2):
        answer = send("POST", mesh.url("forged-sidecar") + "/login", {"content-type": "application/json"})
        problem = caller_mismatch(answer, BILLING_ID)
        assert "may not speak for order" in problem["detail"], problem
    assert mesh.user_requests() == before
    harness.wait_for(lambda: mesh.envoy.meshver_requests("user", "caller_mismatch") == before_counted + 2, 5,
                     "the refusals counted as caller_mismatch")


def test_a_client_claiming_another_identity_is_refused(mesh):
    """A client with billing's certificate that sends order's claim itself gets 403; without a
    claim it is a client like any other (forwarded, no caller passed on)."""
    billing = mesh.ca.client(BILLING_ID, "direct-billing")
    url = mesh.url("inbound", "https") + "/login"
    before = mesh.user_requests()
    caller_mismatch(http1("POST", url, {"x-meshver-caller": "order/2.0.0", "x-api-version": "2.1"}, tls=billing),
                    BILLING_ID)
    assert mesh.user_requests() == before
    plain = http1("POST", url, {"x-api-version": "2.1"}, tls=billing)
    assert (plain.status, plain.json["version"]) == (200, "2.1.0"), plain.body
    assert not any(name.startswith("x-meshver-") for name in plain.json["headers"]), plain.json["headers"]


def test_where_a_client_certificate_is_required_nothing_else_connects(mesh):
    """On the mTLS listener a claim cannot even be made without a certificate of the mesh's CA:
    a plaintext client, a TLS client without a certificate, and one whose certificate (with
    order's SPIFFE ID) another CA signed are all cut off in the handshake, before any filter; a
    sidecar that speaks plaintext to it gets Envoy's 503, not an answer of the filter."""
    url = mesh.url("inbound", "https") + "/login"
    claim = {"x-meshver-caller": "order/2.0.0"}
    before = mesh.user_requests()
    refusals_before = handshake_refusals(mesh)
    # Envoy reads the HTTP/1.1 request as a broken ClientHello and closes the connection.
    with pytest.raises(ConnectionError):
        http1("POST", mesh.url("inbound") + "/login", claim, timeout=5)
    for client in (mesh.ca.client(), mesh.rogue.client(ORDER_ID, "rogue-order")):
        # The rogue client trusts the mesh's CA for the listener's certificate.
        client.load_verify_locations(str(mesh.ca.ca_path))
        # TLS 1.3: the client learns it was refused (an alert) when it reads the answer.
        with pytest.raises((ssl.SSLError, ConnectionError)):
            http1("POST", url, claim, tls=client, timeout=5)
    answer = http1("POST", mesh.url("plaintext-sidecar") + "/login", {"content-type": "application/json"})
    assert answer.status == 503, answer.body
    assert answer.header("content-type") != "application/problem+json"
    assert mesh.user_requests() == before
    # Envoy refused each in the handshake: two plaintext connections (the client's and the
    # sidecar's), one without a certificate, one whose certificate does not verify.
    refused = {name: count - refusals_before.get(name, 0) for name, count in handshake_refusals(mesh).items()}
    assert refused == {"connection_error": 2, "fail_verify_no_cert": 1, "fail_verify_error": 1}, refused


def handshake_refusals(mesh):
    """The inbound listener's TLS error counters, by name."""
    prefix = f"listener.127.0.0.1_{mesh.port('inbound')}.ssl."
    names = ("connection_error", "fail_verify_no_cert", "fail_verify_error")
    stats = mesh.envoy.stats()
    return {name: stats.get(prefix + name, 0) for name in names}


def test_without_a_client_certificate_a_claim_is_refused(mesh):
    """Where the listener lets a client in without a certificate (TLS whose client certificate
    is optional, or plaintext), a claim is refused by the filter: 403, `peer: null`. Requests
    without a claim are served as usual."""
    optional = mesh.url("inbound-optional", "https") + "/login"
    plaintext = mesh.url("inbound-plaintext") + "/login"
    anonymous = mesh.ca.client()
    claim = {"x-meshver-caller": "order/2.0.0", "x-api-version": "2.1"}
    before = mesh.user_requests()
    caller_mismatch(http1("POST", optional, claim, tls=anonymous), None)
    for send in (http1, http2):
        problem = caller_mismatch(send("POST", plaintext, claim), None)
        assert "mTLS" in problem["detail"], problem
    assert mesh.user_requests() == before
    # With order's certificate, the optional listener honours the claim.
    order = mesh.ca.client(ORDER_ID, "optional-order")
    served = http1("POST", optional, claim, tls=order)
    assert (served.status, served.json["headers"].get("x-meshver-caller")) == (200, "order/2.0.0"), served.body
    for answer in (http1("POST", optional, {"x-api-version": "2.1"}, tls=anonymous),
                   http1("POST", plaintext, {"x-api-version": "2.1"})):
        assert (answer.status, answer.json["version"]) == (200, "2.1.0"), answer.body
        assert "x-meshver-caller" not in answer.json["headers"]
