// Apache HttpClient 5 classic (libhttpclient5-java) for compat/run-compat.
// usage: java -cp ... ApacheHc5 URL...  (or: version)
// HttpClients.createDefault() (pooling), requests one after the other.
import org.apache.hc.client5.http.classic.methods.HttpGet;
import org.apache.hc.client5.http.impl.classic.CloseableHttpClient;
import org.apache.hc.client5.http.impl.classic.CloseableHttpResponse;
import org.apache.hc.client5.http.impl.classic.HttpClients;
import org.apache.hc.core5.http.io.entity.EntityUtils;

public class ApacheHc5 {
    public static void main(String[] args) throws Exception {
        if (args[0].equals("version")) {
            System.out.println("Apache HttpClient " + org.apache.hc.core5.util.VersionInfo.loadVersionInfo(
                    "org.apache.hc.client5", ApacheHc5.class.getClassLoader()).getRelease());
            return;
        }
        CloseableHttpClient hc = HttpClients.createDefault();
        // COMPAT_UPLOAD=PUT|POST: the first request sends COMPAT_UPLOAD_FILE
        // with "Expect: 100-continue" (expect-continue enabled in its config)
        for (int i = 0; i < args.length; i++) {
            org.apache.hc.client5.http.classic.methods.HttpUriRequestBase rq;
            if (i == 0 && JavaClients.UPLOAD != null) {
                rq = JavaClients.UPLOAD.equals("PUT") ? new org.apache.hc.client5.http.classic.methods.HttpPut(args[i]) : new org.apache.hc.client5.http.classic.methods.HttpPost(args[i]);
                rq.setEntity(new org.apache.hc.core5.http.io.entity.ByteArrayEntity(JavaClients.uploadBody(), null));
                rq.setConfig(org.apache.hc.client5.http.config.RequestConfig.custom().setExpectContinueEnabled(true).build());
            } else {
                rq = new HttpGet(args[i]);
            }
            try (CloseableHttpResponse r = hc.execute(rq)) {
                byte[] b = r.getEntity() == null ? new byte[0] : EntityUtils.toByteArray(r.getEntity());
                JavaClients.res(i + 1, r.getCode(), b);
            } catch (Throwable e) {
                JavaClients.err(i + 1, e);
            }
        }
        System.exit(0);
    }
}
