// Java clients for compat/run-compat.
//
// usage: java JavaClients httpclient|urlconnection URL1 URL2
//
// httpclient: java.net.http.HttpClient forced to HTTP/1.1, one client, so
// the second request may reuse the first one's connection.
// urlconnection: java.net.HttpURLConnection, whose keep-alive cache reuses
// the connection once the first body was read to the end.
// Prints per request:
//   RESULT <i> <status> <body length> <md5 of body>
//   ERROR <i> <exception>

import java.io.ByteArrayOutputStream;
import java.io.InputStream;
import java.net.HttpURLConnection;
import java.net.URI;
import java.net.URL;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.security.MessageDigest;
import java.time.Duration;

public class JavaClients {
    static String md5(byte[] b) throws Exception {
        StringBuilder sb = new StringBuilder();
        for (byte x : MessageDigest.getInstance("MD5").digest(b)) {
            sb.append(String.format("%02x", x));
        }
        return sb.toString();
    }

    static void res(int i, int status, byte[] body) throws Exception {
        System.out.println("RESULT " + i + " " + status + " " + body.length + " " + md5(body));
        System.out.flush();
    }

    static void err(int i, Throwable e) {
        String m = String.valueOf(e.getMessage()).replace('\n', ' ');
        Throwable c = e.getCause();
        String cm = c == null ? "" : " (cause: " + c.getClass().getSimpleName() + ": "
                + String.valueOf(c.getMessage()).replace('\n', ' ') + ")";
        System.out.println("ERROR " + i + " " + e.getClass().getSimpleName() + ": " + m + cm);
        System.out.flush();
    }

    static byte[] readAll(InputStream in) throws Exception {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        byte[] buf = new byte[8192];
        int n;
        while ((n = in.read(buf)) > 0) {
            out.write(buf, 0, n);
        }
        in.close();
        return out.toByteArray();
    }

    // COMPAT_UPLOAD=PUT|POST (and COMPAT_UPLOAD_FILE): the first request
    // sends that file with "Expect: 100-continue" (httpclient mode)
    static final String UPLOAD = System.getenv("COMPAT_UPLOAD");

    static byte[] uploadBody() throws Exception {
        return java.nio.file.Files.readAllBytes(
                java.nio.file.Paths.get(System.getenv("COMPAT_UPLOAD_FILE")));
    }

    public static void main(String[] args) throws Exception {
        String mode = args[0];
        if (mode.equals("version")) {
            System.out.println("java " + System.getProperty("java.version"));
            return;
        }
        if (mode.equals("httpclient")) {
            HttpClient hc = HttpClient.newBuilder()
                    .version(HttpClient.Version.HTTP_1_1)
                    .connectTimeout(Duration.ofSeconds(10)).build();
            for (int i = 1; i < args.length; i++) {
                try {
                    HttpRequest.Builder b = HttpRequest.newBuilder(URI.create(args[i]))
                            .timeout(Duration.ofSeconds(300));
                    if (i == 1 && UPLOAD != null) {
                        b.expectContinue(true).method(UPLOAD,
                                HttpRequest.BodyPublishers.ofByteArray(uploadBody()));
                    } else {
                        b.GET();
                    }
                    HttpRequest rq = b.build();
                    HttpResponse<byte[]> r = hc.send(rq, HttpResponse.BodyHandlers.ofByteArray());
                    res(i, r.statusCode(), r.body());
                } catch (Throwable e) {
                    err(i, e);
                }
            }
        } else {
            for (int i = 1; i < args.length; i++) {
                try {
                    HttpURLConnection c = (HttpURLConnection) new URL(args[i]).openConnection();
                    c.setConnectTimeout(10000);
                    c.setReadTimeout(300000);
                    int st = c.getResponseCode();
                    InputStream in = st >= 400 ? c.getErrorStream() : c.getInputStream();
                    res(i, st, in == null ? new byte[0] : readAll(in));
                } catch (Throwable e) {
                    err(i, e);
                }
            }
        }
        System.exit(0);
    }
}
