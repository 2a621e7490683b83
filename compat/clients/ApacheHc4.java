// Apache HttpClient 4 (libhttpclient-java) for compat/run-compat.
// usage: java -cp ... ApacheHc4 URL...  (or: version)
// HttpClients.createDefault(): a pooling connection manager, so the
// requests reuse one connection. Prints RESULT/ERROR lines like
// JavaClients.
import org.apache.http.client.methods.CloseableHttpResponse;
import org.apache.http.client.methods.HttpGet;
import org.apache.http.impl.client.CloseableHttpClient;
import org.apache.http.impl.client.HttpClients;
import org.apache.http.util.EntityUtils;

public class ApacheHc4 {
    public static void main(String[] args) throws Exception {
        if (args[0].equals("version")) {
            System.out.println("Apache HttpClient " + org.apache.http.util.VersionInfo.loadVersionInfo(
                    "org.apache.http.client", ApacheHc4.class.getClassLoader()).getRelease());
            return;
        }
        CloseableHttpClient hc = HttpClients.createDefault();
        // COMPAT_UPLOAD=PUT|POST: the first request sends COMPAT_UPLOAD_FILE
        // with "Expect: 100-continue" (expect-continue enabled in its config)
        for (int i = 0; i < args.length; i++) {
            org.apache.http.client.methods.HttpRequestBase rq;
            if (i == 0 && JavaClients.UPLOAD != null) {
                rq = JavaClients.UPLOAD.equals("PUT") ? new org.apache.http.client.methods.HttpPut(args[i]) : new org.apache.http.client.methods.HttpPost(args[i]);
                ((org.apache.http.client.methods.HttpEntityEnclosingRequestBase) rq).setEntity(new org.apache.http.entity.ByteArrayEntity(JavaClients.uploadBody()));
                rq.setConfig(org.apache.http.client.config.RequestConfig.custom().setExpectContinueEnabled(true).build());
            } else {
                rq = new HttpGet(args[i]);
            }
            try (CloseableHttpResponse r = hc.execute(rq)) {
                byte[] b = r.getEntity() == null ? new byte[0] : EntityUtils.toByteArray(r.getEntity());
                JavaClients.res(i + 1, r.getStatusLine().getStatusCode(), b);
            } catch (Throwable e) {
                JavaClients.err(i + 1, e);
            }
        }
        System.exit(0);
    }
}
