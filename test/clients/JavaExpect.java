// java JavaExpect.java METHOD URL: one upload with Java's HttpClient
// (java.net.http, HTTP/1.1) and "Expect: 100-continue"; prints
// "status length". The client sends its body after the 100 Continue.
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;

public class JavaExpect {
    public static void main(String[] args) throws Exception {
        HttpClient client = HttpClient.newBuilder()
            .version(HttpClient.Version.HTTP_1_1).build();
        HttpRequest req = HttpRequest.newBuilder(URI.create(args[1]))
            .timeout(Duration.ofSeconds(30))
            .expectContinue(true)
            .method(args[0], HttpRequest.BodyPublishers.ofByteArray(
                new byte[4096]))
            .build();
        HttpResponse<byte[]> resp = client.send(req,
            HttpResponse.BodyHandlers.ofByteArray());
        System.out.println(resp.statusCode() + " " + resp.body().length);
    }
}
