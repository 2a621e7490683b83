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
        for (int i = 0; i < args.length; i++) {
            try (CloseableHttpResponse r = hc.execute(new HttpGet(args[i]))) {
                byte[] b = r.getEntity() == null ? new byte[0] : EntityUtils.toByteArray(r.getEntity());
                JavaClients.res(i + 1, r.getStatusLine().getStatusCode(), b);
            } catch (Throwable e) {
                JavaClients.err(i + 1, e);
            }
        }
        System.exit(0);
    }
}
