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
        for (int i = 0; i < args.length; i++) {
            try (CloseableHttpResponse r = hc.execute(new HttpGet(args[i]))) {
                byte[] b = r.getEntity() == null ? new byte[0] : EntityUtils.toByteArray(r.getEntity());
                JavaClients.res(i + 1, r.getCode(), b);
            } catch (Throwable e) {
                JavaClients.err(i + 1, e);
            }
        }
        System.exit(0);
    }
}
