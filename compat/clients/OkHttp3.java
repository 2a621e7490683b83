// OkHttp 3 (libokhttp-java) for compat/run-compat.
// usage: java -cp ... OkHttp3 URL...  (or: version)
// One OkHttpClient with its defaults (connection pool), requests one after
// the other.
import okhttp3.OkHttpClient;
import okhttp3.Request;
import okhttp3.Response;

public class OkHttp3 {
    public static void main(String[] args) throws Exception {
        if (args[0].equals("version")) {
            System.out.println(okhttp3.internal.Version.userAgent());
            return;
        }
        OkHttpClient c = new OkHttpClient();
        for (int i = 0; i < args.length; i++) {
            try (Response r = c.newCall(new Request.Builder().url(args[i]).build()).execute()) {
                byte[] b = r.body() == null ? new byte[0] : r.body().bytes();
                JavaClients.res(i + 1, r.code(), b);
            } catch (Throwable e) {
                JavaClients.err(i + 1, e);
            }
        }
        System.exit(0);
    }
}
