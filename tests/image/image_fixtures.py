"""Fixtures for the image store's integration tests: OCI images built from scratch (no internet), a real
registry (Debian's docker-registry) on a random loopback port with optional htpasswd or token auth, a token
server, and file-tree listings to compare Kiln's root filesystems with umoci's."""
import base64
import ctypes
import gzip
import hashlib
import http.server
import io
import json
import os
import signal
import socket
import stat
import subprocess
import tarfile
import threading
import time
import urllib.parse

BIN_DIR = os.environ.get("KILN_BIN_DIR", os.path.join(os.path.dirname(__file__), "../../build/dev/bin"))
KILN = os.path.join(BIN_DIR, "kiln")
MTIME = 1700000000

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _die_with_parent():
    # PR_SET_PDEATHSIG(SIGKILL): the registry never outlives the test process.
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, process, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"registry exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.02)  # polling the port, not waiting for a guess
    raise RuntimeError(f"nothing listens on port {port}")


# --- layers and images -------------------------------------------------------------------------------

class Layer:
    """A layer tar built entry by entry; any name or link target, as a hostile image could have."""

    def __init__(self):
        self.buffer = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buffer, mode="w", format=tarfile.PAX_FORMAT)

    def _info(self, name, kind, mode, uid=0, gid=0):
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.uid, info.gid, info.mtime = kind, mode, uid, gid, MTIME
        info.uname = info.gname = ""
        return info

    def dir(self, name, mode=0o755, uid=0, gid=0):
        self.tar.addfile(self._info(name, tarfile.DIRTYPE, mode, uid, gid))
        return self

    def file(self, name, data=b"", mode=0o644, uid=0, gid=0):
        info = self._info(name, tarfile.REGTYPE, mode, uid, gid)
        info.size = len(data)
        self.tar.addfile(info, io.BytesIO(data))
        return self

    def symlink(self, name, target):
        info = self._info(name, tarfile.SYMTYPE, 0o777)
        info.linkname = target
        self.tar.addfile(info)
        return self

    def hardlink(self, name, target):
        info = self._info(name, tarfile.LNKTYPE, 0o644)
        info.linkname = target
        self.tar.addfile(info)
        return self

    def bytes(self):
        self.tar.close()
        return self.buffer.getvalue()


def gzipped(data):
    return gzip.compress(data, compresslevel=6, mtime=0)


def busybox_layer():
    """A root filesystem around the host's static busybox, with the usual applet links."""
    with open("/bin/busybox", "rb") as f:
        busybox = f.read()
    layer = Layer().dir("bin").dir("etc").dir("tmp", 0o1777).dir("root", 0o700).dir("usr").dir("usr/bin")
    layer.file("bin/busybox", busybox, 0o755)
    for applet in ("sh", "ls", "cat", "echo", "sha256sum", "true"):
        layer.symlink(f"bin/{applet}", "busybox")
    layer.symlink("usr/bin/env", "/bin/busybox")
    layer.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n")
    layer.file("etc/group", b"root:x:0:\n")
    return layer.bytes()


def multilayer_layers():
    """Three layers whose later ones delete files (whiteouts), replace a directory (opaque), and add
    hard links, symlinks, odd modes and owners."""
    base = (Layer().dir("etc").file("etc/hostname", b"base\n").file("etc/remove-me", b"gone later\n")
            .dir("data").file("data/old1", b"1").dir("data/sub").file("data/sub/old2", b"2")
            .dir("opt").dir("opt/app").file("opt/app/v1", b"v1", 0o600, 1000, 1000)
            .dir("lib").file("lib/libc.so", b"libc" * 1000).symlink("lib64", "lib")
            .file("replace-with-dir", b"file").dir("replace-with-file").file("replace-with-file/x", b"x")
            .bytes())
    middle = (Layer().dir("etc").file("etc/.wh.remove-me")
              .dir("data", 0o750).file("data/.wh..wh..opq").file("data/new", b"new data")
              .dir("opt/app").file("opt/app/.wh.v1").file("opt/app/v2", b"v2", 0o4755, 0, 0)
              .hardlink("opt/app/v2-link", "opt/app/v2")
              .symlink("opt/current", "app/v2").symlink("opt/absolute", "/opt/app/v2")
              .file(".wh.replace-with-dir").dir("replace-with-dir", 0o700, 33, 33)
              .file("replace-with-file", b"now a file", 0o640, 0, 42)
              .bytes())
    top = (Layer().dir("data").file("data/later", b"later", 0o444, 65534, 65534)
           .hardlink("data/later-link", "data/later").dir("opt").file("opt/.wh.absolute")
           .file("etc/hostname", b"top\n")
           .bytes())
    return [gzipped(base), middle, gzipped(top)]


def image_config(layers_uncompressed, cmd=("/bin/sh",)):
    return json.dumps({
        "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
        "config": {"Cmd": list(cmd), "Env": ["PATH=/usr/bin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [sha256(l) for l in layers_uncompressed]},
        "history": [{"created_by": "kiln test fixture"} for _ in layers_uncompressed],
    }, sort_keys=True).encode()


def uncompressed(layer):
    try:
        return gzip.decompress(layer) if layer[:2] == b"\x1f\x8b" else layer
    except EOFError:  # a deliberately truncated layer: any diff_id will do, it is refused before
        return layer


def write_oci_layout(path, layers, tag="latest", config=None, extra_platforms=()):
    """Writes an OCI image layout; `layers` are blobs (gzip or plain tar). With `extra_platforms`, the
    tag names an index listing those platforms' manifests (same content) besides linux/amd64."""
    os.makedirs(os.path.join(path, "blobs", "sha256"), exist_ok=True)

    def put(data):
        with open(os.path.join(path, "blobs", "sha256", sha256(data)[7:]), "wb") as f:
            f.write(data)
        return {"digest": sha256(data), "size": len(data)}

    config = config or image_config([uncompressed(l) for l in layers])
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, **put(config)},
        "layers": [{"mediaType": OCI_LAYER_GZIP if l[:2] == b"\x1f\x8b" else OCI_LAYER, **put(l)} for l in layers],
    }).encode()
    top = {"mediaType": OCI_MANIFEST, **put(manifest)}
    if extra_platforms:
        entries = []
        for arch in extra_platforms:
            other = json.loads(config)
            other["architecture"] = arch
            other = json.dumps(other).encode()
            m = json.loads(manifest)
            m["config"] = {"mediaType": OCI_CONFIG, **put(other)}
            m = json.dumps(m).encode()
            entries.append({"mediaType": OCI_MANIFEST, **put(m), "platform": {"os": "linux", "architecture": arch}})
        entries.insert(1, {**top, "platform": {"os": "linux", "architecture": "amd64"}})
        index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode()
        top = {"mediaType": OCI_INDEX, **put(index)}
    top["annotations"] = {"org.opencontainers.image.ref.name": tag}
    with open(os.path.join(path, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [top]}, f)
    with open(os.path.join(path, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    return {"manifest_digest": sha256(manifest), "config_digest": sha256(config), "top_digest": top["digest"]}


def docker_archive(path, layers, repo_tag):
    """A `docker save` archive (manifest.json) of plain or compressed layer blobs."""
    config = image_config([uncompressed(l) for l in layers])
    with tarfile.open(path, "w") as tar:
        def add(name, data):
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), MTIME
            tar.addfile(info, io.BytesIO(data))
        add("config.json", config)
        for i, layer in enumerate(layers):
            add(f"layer{i}/layer.tar", layer)
        add("manifest.json", json.dumps([{"Config": "config.json", "RepoTags": [repo_tag],
                                           "Layers": [f"layer{i}/layer.tar" for i in range(len(layers))]}]).encode())


# --- trees -------------------------------------------------------------------------------------------

def tree_listing(root):
    """One line per entry: path, type, permission bits, uid, gid, and content hash or link target."""
    lines = []
    for directory, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(dirs + files):
            full = os.path.join(directory, name)
            st = os.lstat(full)
            mode = st.st_mode
            line = f"{os.path.relpath(full, root)} {stat.filemode(mode)} {oct(stat.S_IMODE(mode))} {st.st_uid}:{st.st_gid}"
            if stat.S_ISLNK(mode):
                line += " -> " + os.readlink(full)
            elif stat.S_ISREG(mode):
                with open(full, "rb") as f:
                    line += " " + hashlib.sha256(f.read()).hexdigest()[:16]
            elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                line += f" {os.major(st.st_rdev)},{os.minor(st.st_rdev)}"
            lines.append(line)
    return lines


def erofs_tree(image, workdir):
    """The listing of an EROFS image and why it is not exact (None when it is). Exact through a read-only
    loop mount (needs root and a loop device); otherwise through `fsck.erofs --extract`, which drops set-id
    bits and hard links, so the caller must mask set-id bits and say that it did."""
    mountpoint = os.path.join(workdir, "mnt")
    os.makedirs(mountpoint, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "erofs", "-o", "loop,ro", image, mountpoint], capture_output=True)
    if mounted.returncode == 0:
        try:
            return tree_listing(mountpoint), None
        finally:
            subprocess.run(["umount", mountpoint], check=True)
    why = (f"set-id bits unchecked: a loop mount of the EROFS image failed (needs root and a loop device): "
           f"{(mounted.stderr.decode(errors='replace').strip() or f'exit {mounted.returncode}')}")
    out = os.path.join(workdir, "extract")
    subprocess.run(["fsck.erofs", f"--extract={out}", image], check=True, capture_output=True)
    return tree_listing(out), why


def without_setid(listing):
    return [line.replace(" -rws", " -rwx").replace(" 0o4", " 0o").replace(" 0o2", " 0o") for line in listing]


def umoci_rootfs(layout, tag, bundle):
    subprocess.run(["umoci", "unpack", "--image", f"{layout}:{tag}", bundle], check=True, capture_output=True)
    return os.path.join(bundle, "rootfs")


# --- registry ----------------------------------------------------------------------------------------

class Registry:
    """docker-registry serving from `workdir` on 127.0.0.1:<random>; killed by stop() or with the test."""

    def __init__(self, workdir, htpasswd=None, token=None):
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.storage = os.path.join(workdir, "storage")
        auth = ""
        if htpasswd:
            auth = f"auth:\n  htpasswd:\n    realm: kiln-test\n    path: {htpasswd}\n"
        elif token:
            auth = (f"auth:\n  token:\n    realm: {token.realm}\n    service: {token.service}\n"
                    f"    issuer: {token.issuer}\n    rootcertbundle: {token.cert}\n")
        config = os.path.join(workdir, "registry.yml")
        with open(config, "w") as f:
            f.write(f"version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {self.storage}\n"
                    f"  delete:\n    enabled: true\nhttp:\n  addr: {self.address}\n  secret: kiln-test\n{auth}")
        self.log_path = os.path.join(workdir, "registry.log")
        self.log = open(self.log_path, "wb")
        self.process = subprocess.Popen(["docker-registry", "serve", config], stdout=self.log, stderr=subprocess.STDOUT,
                                        preexec_fn=_die_with_parent)
        wait_for_port(self.port, self.process)

    def stop(self):
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.log.close()

    def blob_path(self, digest):
        hexa = digest.split(":")[1]
        return os.path.join(self.storage, "docker/registry/v2/blobs/sha256", hexa[:2], hexa, "data")

    def log_text(self):
        self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")


def htpasswd_file(path, user, password):
    out = subprocess.run(["htpasswd", "-Bbn", user, password], check=True, capture_output=True).stdout
    with open(path, "wb") as f:
        f.write(out)
    return path


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    """A Docker token server (distribution's token auth spec): Basic-authenticated GET /token issues RS256
    JWTs granting the requested scopes, signed with a self-signed certificate the registry trusts."""

    def __init__(self, workdir, user, password):
        self.user, self.password = user, password
        self.service, self.issuer = "kiln-test-registry", "kiln-test-issuer"
        self.key = os.path.join(workdir, "token.key")
        self.cert = os.path.join(workdir, "token.crt")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", self.key, "-out",
                        self.cert, "-days", "2", "-subj", "/CN=kiln-test-token"], check=True, capture_output=True)
        der = subprocess.run(["openssl", "x509", "-in", self.cert, "-outform", "DER"], check=True,
                             capture_output=True).stdout
        self.x5c = base64.b64encode(der).decode()
        self.requests = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                url = urllib.parse.urlparse(self.path)
                query = urllib.parse.parse_qs(url.query)
                granted = None
                auth = self.headers.get("Authorization", "")
                if auth.startswith("Basic "):
                    user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
                    granted = user if (user, password) == (server.user, server.password) else None
                    if granted is None:
                        self.send_response(401)
                        self.end_headers()
                        return
                server.requests.append((granted, query.get("scope", [])))
                token = server.issue(granted, query.get("scope", []) if granted else [])
                body = json.dumps({"token": token, "access_token": token}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.realm = f"http://127.0.0.1:{self.httpd.server_address[1]}/token"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def issue(self, subject, scopes):
        access = []
        for scope in scopes:
            for one in scope.split(" "):
                kind, _, rest = one.partition(":")
                name, _, actions = rest.rpartition(":")
                access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        claims = {"iss": self.issuer, "sub": subject or "", "aud": self.service, "exp": now + 600, "nbf": now - 60,
                  "iat": now, "jti": os.urandom(8).hex(), "access": access}
        signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
        signature = subprocess.run(["openssl", "dgst", "-sha256", "-sign", self.key], input=signing_input.encode(),
                                   check=True, capture_output=True).stdout
        return f"{signing_input}.{b64url(signature)}"

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
