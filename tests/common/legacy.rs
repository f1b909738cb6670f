//! Real legacy web servers on ephemeral ports, for tests that check how the applications behind
//! the proxy read header names and request paths: Apache Tomcat 10.1 (a JSP mapped to `/*`),
//! lighttpd with mod_cgi (a CGI script that every path is rewritten to) and PHP's built-in
//! server (a router script). Each one answers every request with a JSON report of what the
//! application sees (the request URI, the path as the server mapped it, and the headers or the
//! `HTTP_*` variables), parsed into a [`LegacyReport`].
//!
//! A request header `X-Test-Login: <JSON>` makes each of them answer with
//! `X-Sessiongate-Login: <JSON>`, so a test can sign a user in through the proxy.
//!
//! Each server gets a fresh temporary directory with its own configuration and web root, listens
//! on 127.0.0.1 only, and is killed with its whole process group on drop. The packages come from
//! Debian (`scripts/deps.sh legacy`); none of their system configuration is used.

use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::poll::eventually_blocking;
use super::proc::{free_port, wait_for_port};

/// Where Debian's `tomcat10` package keeps Tomcat (`CATALINA_HOME`).
pub const CATALINA_HOME: &str = "/usr/share/tomcat10";

/// How long a Tomcat may take from spawn until the JSP answers 200: the first request compiles
/// it, which takes seconds on a busy two-core machine.
const TOMCAT_READY: Duration = Duration::from_secs(90);

/// Which legacy server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegacyKind {
    /// Tomcat 10.1: header names are compared case-insensitively, as sent (no folding).
    Tomcat,
    /// lighttpd with mod_cgi: headers arrive as CGI `HTTP_*` environment variables.
    LighttpdCgi,
    /// PHP's built-in web server (`php -S`): headers arrive as `$_SERVER['HTTP_*']`.
    Php,
}

impl LegacyKind {
    /// The name the server reports as `server` in its JSON.
    pub fn name(self) -> &'static str {
        match self {
            LegacyKind::Tomcat => "tomcat",
            LegacyKind::LighttpdCgi => "lighttpd",
            LegacyKind::Php => "php",
        }
    }
}

/// A running legacy server. Killed (with every process it started) on drop.
pub struct LegacyServer {
    pub addr: SocketAddr,
    kind: LegacyKind,
    child: Child,
    /// The server's stdout and stderr, then any log file of its own.
    logs: Vec<PathBuf>,
    startup: Duration,
    dir: tempfile::TempDir,
}

impl LegacyServer {
    /// Tomcat 10.1 from Debian's `tomcat10` (CATALINA_HOME=/usr/share/tomcat10), with a
    /// CATALINA_BASE of its own: one HTTP/1.1 connector, no shutdown port, no AJP, and a ROOT
    /// web application whose only servlet is a JSP mapped to `/*`. Waits until the JSP answers.
    pub fn tomcat() -> Self {
        let started = Instant::now();
        let dir = tempfile::tempdir().expect("temp dir for CATALINA_BASE");
        let base = dir.path();
        let port = free_port();
        for sub in ["conf", "logs", "temp", "work", "webapps/ROOT/WEB-INF"] {
            std::fs::create_dir_all(base.join(sub)).expect("creates CATALINA_BASE folders");
        }
        write(
            &base.join("conf/server.xml"),
            &TOMCAT_SERVER_XML.replace("{port}", &port.to_string()),
        );
        write(&base.join("conf/web.xml"), TOMCAT_DEFAULT_WEB_XML);
        write(&base.join("conf/context.xml"), TOMCAT_CONTEXT_XML);
        write(&base.join("conf/logging.properties"), TOMCAT_LOGGING);
        write(
            &base.join("webapps/ROOT/WEB-INF/web.xml"),
            TOMCAT_APP_WEB_XML,
        );
        write(&base.join("webapps/ROOT/report.jsp"), TOMCAT_JSP);

        let home = Path::new(CATALINA_HOME);
        assert!(
            home.join("bin/bootstrap.jar").exists(),
            "Tomcat is not installed in {CATALINA_HOME}: run scripts/deps.sh legacy"
        );
        let log = base.join("logs/catalina.out");
        let classpath = format!(
            "{}:{}",
            home.join("bin/bootstrap.jar").display(),
            home.join("bin/tomcat-juli.jar").display()
        );
        // What `catalina.sh run` would exec, without its environment probing, plus small-heap
        // and fast-start flags (C1 only, serial GC, non-blocking entropy).
        let mut command = Command::new(find_program("java"));
        command
            .args([
                "-Xmx128m",
                "-Xss512k",
                "-XX:+UseSerialGC",
                "-XX:TieredStopAtLevel=1",
                "-Xshare:auto",
                "-Djava.security.egd=file:/dev/./urandom",
                "--add-opens=java.base/java.lang=ALL-UNNAMED",
                "--add-opens=java.base/java.lang.reflect=ALL-UNNAMED",
                "--add-opens=java.base/java.io=ALL-UNNAMED",
                "--add-opens=java.base/java.util=ALL-UNNAMED",
                "--add-opens=java.base/java.util.concurrent=ALL-UNNAMED",
                "--add-opens=java.rmi/sun.rmi.transport=ALL-UNNAMED",
                "-Djava.util.logging.manager=org.apache.juli.ClassLoaderLogManager",
            ])
            .arg(format!(
                "-Djava.util.logging.config.file={}",
                base.join("conf/logging.properties").display()
            ))
            .arg(format!("-Dcatalina.home={CATALINA_HOME}"))
            .arg(format!("-Dcatalina.base={}", base.display()))
            .arg(format!("-Djava.io.tmpdir={}", base.join("temp").display()))
            .args([
                "-classpath",
                &classpath,
                "org.apache.catalina.startup.Bootstrap",
            ])
            .arg("start")
            .env("CATALINA_HOME", CATALINA_HOME)
            .env("CATALINA_BASE", base)
            .current_dir(base);
        let mut child = spawn(command, &log, "java (Tomcat)");
        wait_for_port(port, &mut child, "tomcat", Some(&log));
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut server = LegacyServer {
            addr,
            kind: LegacyKind::Tomcat,
            child,
            logs: vec![log],
            startup: Duration::ZERO,
            dir,
        };
        server.wait_until_answers(started + TOMCAT_READY);
        server.startup = started.elapsed();
        server
    }

    /// lighttpd (`lighttpd -D -f lighttpd.conf`, not daemonised) with mod_cgi: mod_rewrite
    /// sends every path to `/report.cgi` (a Python 3 script) with the original path as its
    /// PATH_INFO, and lighttpd keeps the original request in REQUEST_URI.
    pub fn lighttpd_cgi() -> Self {
        let started = Instant::now();
        let dir = tempfile::tempdir().expect("temp dir for lighttpd");
        let root = dir.path().join("htdocs");
        std::fs::create_dir_all(&root).expect("creates the document root");
        let port = free_port();
        let python = find_program("python3");
        write(&root.join("report.cgi"), CGI_SCRIPT);
        let conf = dir.path().join("lighttpd.conf");
        let error_log = dir.path().join("error.log");
        write(
            &conf,
            &LIGHTTPD_CONF
                .replace("{root}", &root.display().to_string())
                .replace("{dir}", &dir.path().display().to_string())
                .replace("{port}", &port.to_string())
                .replace("{python}", &python.display().to_string()),
        );
        let log = dir.path().join("lighttpd.out");
        let mut command = Command::new(find_program("lighttpd"));
        command
            .arg("-D")
            .arg("-f")
            .arg(&conf)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .current_dir(dir.path());
        let mut child = spawn(command, &log, "lighttpd");
        wait_for_port(port, &mut child, "lighttpd", Some(&log));
        LegacyServer {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            kind: LegacyKind::LighttpdCgi,
            child,
            logs: vec![log, error_log],
            startup: started.elapsed(),
            dir,
        }
    }

    /// PHP's built-in web server (`php -n -S 127.0.0.1:PORT -t DOCROOT router.php`), whose
    /// router script answers every path. Runs with an empty environment (and no php.ini), so
    /// `$_SERVER['HTTP_*']` holds only what came from request headers.
    pub fn php() -> Self {
        let started = Instant::now();
        let dir = tempfile::tempdir().expect("temp dir for php");
        let root = dir.path().join("docroot");
        std::fs::create_dir_all(&root).expect("creates the document root");
        let router = dir.path().join("router.php");
        write(&router, PHP_ROUTER);
        let port = free_port();
        let log = dir.path().join("php.out");
        let mut command = Command::new(find_program("php"));
        command
            .arg("-n")
            .arg("-S")
            .arg(format!("127.0.0.1:{port}"))
            .arg("-t")
            .arg(&root)
            .arg(&router)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .current_dir(dir.path());
        let mut child = spawn(command, &log, "php");
        wait_for_port(port, &mut child, "php -S", Some(&log));
        LegacyServer {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            kind: LegacyKind::Php,
            child,
            logs: vec![log],
            startup: started.elapsed(),
            dir,
        }
    }

    pub fn kind(&self) -> LegacyKind {
        self.kind
    }

    /// "tomcat", "lighttpd" or "php" (what the server reports as `server`).
    pub fn name(&self) -> &'static str {
        self.kind.name()
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// How long the constructor took, from spawning to the first answer it waited for.
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    /// The server's own directory (configuration, web root, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Everything the server has written so far: its stdout and stderr, then its log files.
    pub fn logs(&self) -> String {
        self.logs
            .iter()
            .filter_map(|p| {
                let text = std::fs::read_to_string(p).ok()?;
                Some(format!("--- {} ---\n{text}", p.display()))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Polls `GET /` until it answers 200 or `deadline` passes (Tomcat: the JSP is compiled on
    /// the first request that reaches it). Answers other than 200 go to the test's output (the
    /// logs follow from `drop` if it fails).
    fn wait_until_answers(&mut self, deadline: Instant) {
        let mut last = String::new();
        let limit = deadline.saturating_duration_since(Instant::now());
        let what = format!("{} did not answer 200 within {TOMCAT_READY:?}", self.name());
        eventually_blocking(limit, &what, || {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{} exited with {status} before answering", self.name());
            }
            let answer = match blocking_get(self.addr, "/__ready", deadline) {
                Ok(text) if text.starts_with("HTTP/1.1 200") => return true,
                Ok(text) => text,
                Err(e) => e.to_string(),
            };
            if answer != last {
                eprintln!("{} answered: {answer}", self.name());
                last = answer;
            }
            false
        });
    }
}

impl Drop for LegacyServer {
    fn drop(&mut self) {
        // The child leads its own process group: end it and whatever it started (CGI scripts).
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- {} logs ---\n{}", self.name(), self.logs());
        }
    }
}

/// A GET request as raw HTTP/1.1 text (for `common::raw_request`), with `Host` and
/// `Connection: close` added and the extra headers exactly as given (any name the wire allows).
pub fn raw_get(path: &str, headers: &[(&str, &str)]) -> String {
    let mut text = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("Connection: close\r\n\r\n");
    text
}

/// What a legacy application saw, from a legacy server's JSON reply.
#[derive(Debug, Clone)]
pub struct LegacyReport {
    /// "tomcat", "lighttpd" or "php".
    pub server: String,
    /// The HTTP status of the reply.
    pub status: u16,
    /// The request URI as the application reads it, as the client sent it, not decoded:
    /// Tomcat `getRequestURI()` (without the query), CGI/PHP `REQUEST_URI` (with it).
    pub request_uri: String,
    /// The path as the server mapped it after its own decoding and normalisation: Tomcat
    /// `getServletPath() + getPathInfo()` (path parameters such as `;jsessionid=` removed);
    /// lighttpd the PATH_INFO of the CGI that every path is rewritten to; PHP `SCRIPT_NAME`
    /// (the built-in server's decoded path with dot segments resolved).
    pub mapped_path: Option<String>,
    pub path_info: Option<String>,
    pub script_name: Option<String>,
    /// Tomcat: every request header as (name, value), grouped by name in order of first
    /// appearance, as `getHeaderNames()`/`getHeaders()` give them (Tomcat 10.1 reports names in
    /// lower case). lighttpd: every `HTTP_*` entry of the CGI's environment, in order, repeated
    /// names included (two header names that fold to one variable give two entries). PHP:
    /// every `HTTP_*` key of `$_SERVER` (one value each), sorted by name.
    pub headers: Vec<(String, String)>,
    /// The whole JSON reply.
    pub json: serde_json::Value,
}

impl LegacyReport {
    /// Parses a raw HTTP response (as `common::raw_request` returns it) from a legacy server.
    pub fn from_response(response: &str) -> Result<LegacyReport, String> {
        let (head, body) = response
            .split_once("\r\n\r\n")
            .ok_or_else(|| format!("no end of headers in: {response:?}"))?;
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("no status in: {head:?}"))?;
        let chunked = head.lines().any(|l| {
            l.split_once(':').is_some_and(|(n, v)| {
                n.trim().eq_ignore_ascii_case("transfer-encoding")
                    && v.to_ascii_lowercase().contains("chunked")
            })
        });
        let body = if chunked {
            dechunk(body)?
        } else {
            body.to_string()
        };
        let mut report = Self::from_json(&body)
            .map_err(|e| format!("{e}; status {status}; response: {response:?}"))?;
        report.status = status;
        Ok(report)
    }

    /// Parses a legacy server's JSON report (status left at 200).
    pub fn from_json(body: &str) -> Result<LegacyReport, String> {
        let json: serde_json::Value =
            serde_json::from_str(body).map_err(|e| format!("not JSON ({e}): {body:?}"))?;
        let text = |key: &str| json.get(key).and_then(|v| v.as_str()).map(String::from);
        let server = text("server").ok_or("no `server` in the report")?;
        let request_uri = text("request_uri").ok_or("no `request_uri` in the report")?;
        // Tomcat's `headers` and lighttpd's `environ` are ordered lists of pairs; PHP's `env`
        // is a mapping (one value per name), listed sorted by name.
        let pairs = json.get("headers").or_else(|| json.get("environ"));
        let headers: Vec<(String, String)> = if let Some(pairs) = pairs {
            pairs
                .as_array()
                .ok_or("`headers`/`environ` is not an array")?
                .iter()
                .map(|pair| match pair.as_array().map(Vec::as_slice) {
                    Some([n, v]) => match (n.as_str(), v.as_str()) {
                        (Some(n), Some(v)) => Ok((n.to_string(), v.to_string())),
                        _ => Err(format!("bad header pair {pair}")),
                    },
                    _ => Err(format!("bad header pair {pair}")),
                })
                .collect::<Result<_, _>>()?
        } else {
            let mut env: Vec<(String, String)> = json
                .get("env")
                .and_then(|e| e.as_object())
                .ok_or("no `headers`, `environ` or `env` in the report")?
                .iter()
                .map(|(n, v)| (n.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect();
            env.sort();
            env
        };
        Ok(LegacyReport {
            server,
            status: 200,
            request_uri,
            mapped_path: text("mapped_path"),
            path_info: text("path_info"),
            script_name: text("script_name"),
            headers,
            json,
        })
    }

    /// Every value the application may read for `header`, as this server reads names: Tomcat
    /// compares names case-insensitively and folds nothing; a CGI or PHP application reads the
    /// variable `HTTP_` + the name upper-cased with every non-alphanumeric byte as `_` (so
    /// "X-Auth-User" reads `HTTP_X_AUTH_USER`, whichever header names arrived there). Under
    /// lighttpd that variable can occur more than once in the environment, and which entry an
    /// application gets depends on its runtime, so every entry is returned, in order.
    pub fn identity_values(&self, header: &str) -> Vec<String> {
        if self.server == LegacyKind::Tomcat.name() {
            self.headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(header))
                .map(|(_, v)| v.clone())
                .collect()
        } else {
            let variable = cgi_variable(header);
            self.headers
                .iter()
                .filter(|(n, _)| *n == variable)
                .map(|(_, v)| v.clone())
                .collect()
        }
    }

    /// Header names the server reported exactly (Tomcat header names, or `HTTP_*` names).
    pub fn names(&self) -> Vec<&str> {
        self.headers.iter().map(|(n, _)| n.as_str()).collect()
    }
}

/// The CGI meta-variable for a header name (RFC 3875 4.1.18): `HTTP_` + upper case, with every
/// byte that is not a letter or digit as `_`.
pub fn cgi_variable(header: &str) -> String {
    let folded: String = header
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                b.to_ascii_uppercase() as char
            } else {
                '_'
            }
        })
        .collect();
    format!("HTTP_{folded}")
}

/// Decodes a chunked body (sizes in hex, optional extensions, no trailers expected).
fn dechunk(mut body: &str) -> Result<String, String> {
    let mut out = String::new();
    loop {
        let (size_line, rest) = body
            .split_once("\r\n")
            .ok_or_else(|| format!("truncated chunked body: {body:?}"))?;
        let size_hex = size_line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|e| format!("bad chunk size {size_line:?}: {e}"))?;
        if size == 0 {
            return Ok(out);
        }
        let chunk = rest
            .get(..size)
            .ok_or_else(|| format!("chunk shorter than {size}: {rest:?}"))?;
        out.push_str(chunk);
        body = rest[size..].strip_prefix("\r\n").unwrap_or(&rest[size..]);
    }
}

/// A blocking GET with `Connection: close`, returning the whole response text.
fn blocking_get(addr: SocketAddr, path: &str, deadline: Instant) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(100));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(left))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(raw_get(path, &[]).as_bytes())?;
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("writes {}: {e}", path.display()));
}

/// A program from the system directories first (Debian's packages put them there; a user's
/// PATH may hold shims that need an environment the servers do not get), then from PATH.
fn find_program(name: &str) -> PathBuf {
    let system = ["/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/bin"].map(PathBuf::from);
    let path = std::env::var_os("PATH").unwrap_or_default();
    system
        .into_iter()
        .chain(std::env::split_paths(&path))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is not installed: run scripts/deps.sh legacy"))
}

/// Spawns `command` in a process group of its own, stdout and stderr into `log`.
fn spawn(mut command: Command, log: &Path, what: &str) -> Child {
    let out = std::fs::File::create(log).expect("creates the server's log file");
    command
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("clones the log file"))
        .stderr(out)
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("{what} starts (scripts/deps.sh legacy installs it): {e}"))
}

const TOMCAT_SERVER_XML: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<!-- sessiongate test Tomcat: one HTTP/1.1 connector on 127.0.0.1, no shutdown port, no AJP,
     no listeners (no APR/native library probing). -->
<Server port="-1" shutdown="SHUTDOWN">
  <Service name="Catalina">
    <Connector port="{port}" address="127.0.0.1" protocol="HTTP/1.1"
               connectionTimeout="20000" maxThreads="8" minSpareThreads="1" />
    <Engine name="Catalina" defaultHost="localhost">
      <Host name="localhost" appBase="webapps" unpackWARs="false" autoDeploy="false" />
    </Engine>
  </Service>
</Server>
"#;

/// The global web.xml: only the JSP servlet (a `<jsp-file>` servlet runs on its class) and the
/// default servlet, as in Tomcat's own conf/web.xml.
const TOMCAT_DEFAULT_WEB_XML: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<web-app xmlns="https://jakarta.ee/xml/ns/jakartaee"
         xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
         xsi:schemaLocation="https://jakarta.ee/xml/ns/jakartaee https://jakarta.ee/xml/ns/jakartaee/web-app_6_0.xsd"
         version="6.0">
  <servlet>
    <servlet-name>default</servlet-name>
    <servlet-class>org.apache.catalina.servlets.DefaultServlet</servlet-class>
    <init-param><param-name>listings</param-name><param-value>false</param-value></init-param>
    <load-on-startup>1</load-on-startup>
  </servlet>
  <servlet>
    <servlet-name>jsp</servlet-name>
    <servlet-class>org.apache.jasper.servlet.JspServlet</servlet-class>
    <init-param><param-name>fork</param-name><param-value>false</param-value></init-param>
    <init-param><param-name>xpoweredBy</param-name><param-value>false</param-value></init-param>
    <load-on-startup>3</load-on-startup>
  </servlet>
  <servlet-mapping>
    <servlet-name>default</servlet-name>
    <url-pattern>/</url-pattern>
  </servlet-mapping>
  <servlet-mapping>
    <servlet-name>jsp</servlet-name>
    <url-pattern>*.jsp</url-pattern>
  </servlet-mapping>
</web-app>
"#;

/// No class path, manifest or TLD scanning (fast start); no session persistence.
const TOMCAT_CONTEXT_XML: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<Context>
  <JarScanner scanClassPath="false" scanManifest="false" scanAllDirectories="false">
    <JarScanFilter defaultTldScan="false" defaultPluggabilityScan="false" />
  </JarScanner>
  <Manager pathname="" />
</Context>
"#;

const TOMCAT_LOGGING: &str = "\
handlers = java.util.logging.ConsoleHandler
.handlers = java.util.logging.ConsoleHandler
.level = INFO
java.util.logging.ConsoleHandler.level = INFO
java.util.logging.ConsoleHandler.formatter = org.apache.juli.OneLineFormatter
java.util.logging.ConsoleHandler.encoding = UTF-8
";

/// The ROOT application: one servlet, the JSP, mapped to `/*` so that every path reaches it.
const TOMCAT_APP_WEB_XML: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<web-app xmlns="https://jakarta.ee/xml/ns/jakartaee"
         xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
         xsi:schemaLocation="https://jakarta.ee/xml/ns/jakartaee https://jakarta.ee/xml/ns/jakartaee/web-app_6_0.xsd"
         version="6.0" metadata-complete="true">
  <absolute-ordering />
  <servlet>
    <servlet-name>report</servlet-name>
    <jsp-file>/report.jsp</jsp-file>
  </servlet>
  <servlet-mapping>
    <servlet-name>report</servlet-name>
    <url-pattern>/*</url-pattern>
  </servlet-mapping>
</web-app>
"#;

/// Reports the request as Tomcat mapped it. Strings are JSON-escaped by `json()`: quote,
/// backslash, and every character outside printable ASCII as `\uXXXX` (Tomcat decodes header
/// bytes as ISO-8859-1, so each byte comes back as the code point of the same number).
const TOMCAT_JSP: &str = r#"<%@ page session="false" contentType="application/json; charset=UTF-8"
    pageEncoding="UTF-8" trimDirectiveWhitespaces="true" import="java.util.Enumeration" %>
<%!
  private static String json(String s) {
    if (s == null) {
      return "null";
    }
    StringBuilder b = new StringBuilder(s.length() + 2).append('"');
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      if (c == '"' || c == '\\') {
        b.append('\\').append(c);
      } else if (c < 0x20 || c > 0x7e) {
        b.append(String.format("\\u%04x", (int) c));
      } else {
        b.append(c);
      }
    }
    return b.append('"').toString();
  }
%>
<%
  String servletPath = request.getServletPath() == null ? "" : request.getServletPath();
  String pathInfo = request.getPathInfo() == null ? "" : request.getPathInfo();
  StringBuilder headers = new StringBuilder("[");
  Enumeration<String> names = request.getHeaderNames();
  while (names.hasMoreElements()) {
    String name = names.nextElement();
    Enumeration<String> values = request.getHeaders(name);
    while (values.hasMoreElements()) {
      if (headers.length() > 1) {
        headers.append(',');
      }
      headers.append('[').append(json(name)).append(',').append(json(values.nextElement()))
          .append(']');
    }
  }
  headers.append(']');
  String login = request.getHeader("x-test-login");
  if (login != null) {
    response.setHeader("X-Sessiongate-Login", login);
  }
  out.write("{\"server\":\"tomcat\""
      + ",\"method\":" + json(request.getMethod())
      + ",\"request_uri\":" + json(request.getRequestURI())
      + ",\"query_string\":" + json(request.getQueryString())
      + ",\"servlet_path\":" + json(servletPath)
      + ",\"path_info\":" + json(pathInfo)
      + ",\"mapped_path\":" + json(servletPath + pathInfo)
      + ",\"headers\":" + headers
      + "}");
%>"#;

/// Every path is rewritten to the CGI with the original path appended, so lighttpd's decoded,
/// normalised path arrives as PATH_INFO; REQUEST_URI keeps the request as sent.
const LIGHTTPD_CONF: &str = r#"# sessiongate test lighttpd: mod_cgi, every path to /report.cgi.
server.modules = ( "mod_rewrite", "mod_cgi" )
server.document-root = "{root}"
server.bind = "127.0.0.1"
server.port = {port}
server.errorlog = "{dir}/error.log"
server.upload-dirs = ( "{dir}" )
url.rewrite-once = ( "^([^?]*)([?].*)?$" => "/report.cgi$1$2" )
cgi.assign = ( ".cgi" => "{python}" )
"#;

/// The CGI: every `HTTP_*` variable, read as bytes and decoded as ISO-8859-1 so that no byte is
/// lost; JSON with ASCII escapes. lighttpd passes one environment entry per header, so two
/// header names that fold to one variable give the process two entries of that name: `env` is
/// the mapping as Python builds it (the first entry wins; Perl and C `getenv` agree, a shell
/// keeps the last), `environ` every entry in the order the process received them.
const CGI_SCRIPT: &str = r#"import json
import os
import sys

with open("/proc/self/environ", "rb") as f:
    raw = [e.split(b"=", 1) for e in f.read().split(b"\0") if b"=" in e]
environ = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in raw]
env = {k.decode("latin-1"): v.decode("latin-1") for k, v in os.environb.items()}
report = {
    "server": "lighttpd",
    "method": env.get("REQUEST_METHOD"),
    "request_uri": env.get("REQUEST_URI"),
    "query_string": env.get("QUERY_STRING"),
    "path_info": env.get("PATH_INFO", ""),
    "script_name": env.get("SCRIPT_NAME"),
    "mapped_path": env.get("PATH_INFO", ""),
    "env": {k: v for k, v in env.items() if k.startswith("HTTP_")},
    "environ": [[k, v] for k, v in environ if k.startswith("HTTP_")],
}
body = json.dumps(report, ensure_ascii=True).encode("ascii")
login = os.environb.get(b"HTTP_X_TEST_LOGIN")
extra = b"X-Sessiongate-Login: " + login + b"\r\n" if login else b""
sys.stdout.buffer.write(
    b"Status: 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
    + extra
    + b"\r\n"
    + body
)
"#;

/// The router: answers every path (never falls through to a file). Strings are escaped byte
/// by byte, each byte outside printable ASCII as `\u00XX` (its ISO-8859-1 code point).
const PHP_ROUTER: &str = r#"<?php
function j($s) {
    if ($s === null) {
        return 'null';
    }
    $out = '"';
    $n = strlen($s);
    for ($i = 0; $i < $n; $i++) {
        $c = $s[$i];
        $o = ord($c);
        if ($c === '"' || $c === '\\') {
            $out .= '\\' . $c;
        } elseif ($o < 0x20 || $o > 0x7e) {
            $out .= sprintf('\\u%04x', $o);
        } else {
            $out .= $c;
        }
    }
    return $out . '"';
}
$env = [];
foreach ($_SERVER as $k => $v) {
    if (is_string($k) && strncmp($k, 'HTTP_', 5) === 0) {
        $env[] = j($k) . ':' . j(is_string($v) ? $v : json_encode($v));
    }
}
header('Content-Type: application/json');
if (isset($_SERVER['HTTP_X_TEST_LOGIN'])) {
    header('X-Sessiongate-Login: ' . $_SERVER['HTTP_X_TEST_LOGIN']);
}
echo '{"server":"php"',
    ',"method":', j($_SERVER['REQUEST_METHOD'] ?? null),
    ',"request_uri":', j($_SERVER['REQUEST_URI'] ?? null),
    ',"query_string":', j($_SERVER['QUERY_STRING'] ?? null),
    ',"path_info":', j($_SERVER['PATH_INFO'] ?? null),
    ',"script_name":', j($_SERVER['SCRIPT_NAME'] ?? null),
    ',"mapped_path":', j($_SERVER['SCRIPT_NAME'] ?? null),
    ',"env":{', implode(',', $env), '}}';
"#;
